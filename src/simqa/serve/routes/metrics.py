"""``/metrics``: what every worker of this server counted, in Prometheus's text format."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from simqa.serve.deps import live_index

router = APIRouter(tags=["info"])


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Requests by route and status, latencies, the index version and records served,
    writes, the encoder's time (``docs/operations.md`` lists them)."""
    measured = request.app.state.metrics
    measured.index_served(live_index(request))  # what this worker serves, as of now
    body, content_type = measured.scrape()
    return Response(body, media_type=content_type)
