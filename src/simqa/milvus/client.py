"""Talking to Milvus: a client per URI, calls bounded in time, one-line errors.

A call whose server is unreachable or does not answer (restarting, connection reset,
frozen) is retried, if doing it twice is harmless, until ``SIMQA_MILVUS_TIMEOUT`` seconds
have passed in all; past that, or on any other refusal, the caller gets one ``SimqaError``
line naming the URI, never a gRPC traceback.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from pymilvus import MilvusClient, MilvusException

from simqa.errors import SimqaError

#: seconds a call may take, retries included, before it gives up (SIMQA_MILVUS_TIMEOUT)
DEFAULT_TIMEOUT = 10.0
_TRANSIENT = re.compile(
    r"unavailable|failed to connect|connection refused|deadline|timed? ?out|retry timeout|"
    r"fail connecting|connect(ion)? (reset|closed)|socket closed|goaway",
    re.IGNORECASE,
)


#: calls a retry could apply twice (an insert that landed before its answer was lost)
_NOT_IDEMPOTENT = {"insert", "create_collection", "create_alias"}


class MilvusUnavailable(SimqaError):
    """Milvus did not answer within the time allowed (down, unreachable or frozen)."""


def timeout() -> float:
    value = os.environ.get("SIMQA_MILVUS_TIMEOUT", str(DEFAULT_TIMEOUT))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise SimqaError(f"SIMQA_MILVUS_TIMEOUT must be a number of seconds, got {value!r}")
    return seconds


def consistency() -> str:
    """How fresh reads are (SIMQA_MILVUS_CONSISTENCY): ``Strong`` (default) sees every write
    that returned, from any process, at the cost of waiting for the server's next time
    tick (``proxy.timeTickInterval``, 200 ms by default); ``Bounded`` answers at once from
    data at most a few seconds old; ``Session`` sees this process's own writes."""
    level = os.environ.get("SIMQA_MILVUS_CONSISTENCY", "Strong")
    if level not in ("Strong", "Bounded", "Session", "Eventually"):
        raise SimqaError(
            f"SIMQA_MILVUS_CONSISTENCY must be Strong, Bounded, Session or "
            f"Eventually, got {level!r}"
        )
    return level


def is_lite(uri: str) -> bool:
    """A Milvus Lite file (``./NAME.db``) rather than a server address."""
    return uri.endswith(".db") and "://" not in uri


def normalise_uri(uri: str) -> str:
    """``http://host:19530`` as given (``host:port`` gets ``http://``); a Milvus Lite file
    as an absolute path, so every later command finds it from any folder."""
    uri = uri.strip()
    if not uri:
        raise SimqaError("--milvus needs a URI: http://host:19530 or a Milvus Lite file ./NAME.db")
    if is_lite(uri):
        return str(Path(uri).expanduser().resolve())
    if "://" not in uri:
        uri = f"http://{uri}"
    if not re.match(r"^(https?|tcp|grpc)://[^/\s]+", uri):
        raise SimqaError(f"bad Milvus URI {uri!r}: use http://host:19530 or ./NAME.db")
    return uri


class Connection:
    """One pymilvus client and the URI its errors name."""

    def __init__(self, uri: str, token: str | None = None) -> None:
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # errors are ours to tell
        self.uri = normalise_uri(uri)
        self.lite = is_lite(self.uri)
        if self.lite:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():  # Milvus Lite 2.5 still imports pkg_resources
                warnings.simplefilter("ignore", UserWarning)
                import milvus_lite  # noqa: F401
        kwargs: dict[str, Any] = {"uri": self.uri, "timeout": timeout()}
        if token or os.environ.get("SIMQA_MILVUS_TOKEN"):
            kwargs["token"] = token or os.environ["SIMQA_MILVUS_TOKEN"]
        try:
            self.client = MilvusClient(**kwargs)
        except (MilvusException, grpc.RpcError) as exc:
            raise self._error(exc, "connect") from None

    def call(self, method: str, *args: Any, bound: float | None = None, **kwargs: Any) -> Any:
        """``client.method(*args, **kwargs)``, retried while the server is unreachable or
        does not answer, for at most ``timeout()`` seconds in all (``bound`` for work that
        takes the server longer, such as loading a million rows); errors in one line."""
        fn: Callable[..., Any] = getattr(self.client, method)
        bound = max(timeout(), bound or 0.0)
        deadline = time.monotonic() + bound
        while True:
            left = deadline - time.monotonic()
            if not self.lite:
                kwargs["timeout"] = max(0.5, left)
                if method in ("search", "query", "get", "query_iterator"):
                    kwargs.setdefault("consistency_level", consistency())
            try:
                return fn(*args, **kwargs)
            except (MilvusException, grpc.RpcError) as exc:
                if method in ("query", "get") and self.empty_lite_result(exc):
                    return []
                error = self._error(exc, method, bound)
            retry = method not in _NOT_IDEMPOTENT and isinstance(error, MilvusUnavailable)
            if not retry or time.monotonic() + 0.2 >= deadline:
                raise error
            time.sleep(0.2)  # the server may be restarting: try again within the bound

    def empty_lite_result(self, exc: Exception) -> bool:
        """Milvus Lite 2.5 answers an empty query on a collection with an ARRAY field in a
        shape pymilvus 2.5 cannot read ("Unsupported data type: 0"): that means no rows."""
        return self.lite and "Unsupported data type: 0" in str(exc)

    def _error(self, exc: Exception, what: str, seconds: float | None = None) -> SimqaError:
        message = " ".join(str(getattr(exc, "message", None) or exc).split())
        if _TRANSIENT.search(message):
            return MilvusUnavailable(
                f"Milvus at {self.uri} did not answer ({what}) within "
                f"{seconds or timeout():g} s, "
                "retries included: is it running and reachable?"
            )
        reason = re.sub(r"\[(database|collection|alias)=[^\]]*\]", "", message)[:300]
        return SimqaError(f"Milvus at {self.uri} refused {what}: {reason}")

    @staticmethod
    def same(a: str, b: str) -> bool:
        """True when two URIs name the same Milvus (after normalising)."""
        return normalise_uri(a) == normalise_uri(b)

    def close(self) -> None:
        """Nothing to do: pymilvus shares one connection per URI within a process (closing
        it would cut off every other index open on the same Milvus); it ends with it."""
