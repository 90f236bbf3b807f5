"""Which route a request is for, by its template (``/v1/similar/{record_id}``), before the
router runs: what the metrics label a request with and what tells a cacheable read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from starlette.routing import BaseRoute, Match, Router
from starlette.types import Scope

#: the label of a request no route answers (a 404): unknown paths make no new series
UNMATCHED = "unmatched"
_KEY = "simqa.route"


class Routes:
    """The app's routes, flattened once they are all in (at the first request)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._flat: list[BaseRoute] | None = None

    def __iter__(self) -> Iterator[BaseRoute]:
        if self._flat is None:
            self._flat = list(_flatten(self.router.routes))
        return iter(self._flat)


def _flatten(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Routes, with those of each included router in its place (newer FastAPI versions
    keep an included router whole; simqa includes its routers without a prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield route


def route_of(scope: Scope, routes: Routes) -> str:
    """The template of the route ``scope`` goes to (its path with the parameters' names),
    ``UNMATCHED`` if none; worked out once per request."""
    known = scope.get(_KEY)
    if known is None:
        known = UNMATCHED
        for route in routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                known = getattr(route, "path_format", UNMATCHED)
                break
            if match is Match.PARTIAL and known == UNMATCHED:  # the path, another method
                known = getattr(route, "path_format", UNMATCHED)
        scope[_KEY] = known
    return known


#: the routes whose answers depend only on the index version and the request: cacheable
READS = frozenset(
    {
        "/v1/similar/{record_id}",
        "/v1/search",
        "/v1/consultations/{record_id}",
        "/",
        "/c/{record_id}",
    }
)
#: the routes that change the index
WRITES_PREFIX = "/v1/consultations"


def is_write(method: str, route: str) -> bool:
    return method in ("POST", "DELETE", "PUT", "PATCH") and route.startswith(WRITES_PREFIX)
