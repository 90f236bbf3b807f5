"""Prometheus metrics at ``/metrics``: requests by route and status, their latency, the
index served, the writes and the encoder's time.

Under ``simqa serve`` every worker writes its numbers to files in a folder the parent
makes (``PROMETHEUS_MULTIPROC_DIR``, removed when the server stops) and a scrape, answered
by whichever worker, adds up every worker's (prometheus-client's multiprocess mode). A
worker that stops marks itself dead; one that was killed is marked dead at the next
scrape, so its live gauges drop out while its counts stay in the totals. Without that
folder (an app made with ``create_app`` in a process of one's own) the numbers are the
process's own.

``prometheus_client`` is imported only when an app with metrics is made: the folder must be
in the environment before it is, or the numbers would stay in the process.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simqa.serve.routing import Routes, is_write, route_of

log = logging.getLogger("simqa.serve")

DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"
#: seconds: a box by id takes ~1 ms, a search ~5 ms, a page ~10 ms, a write seconds
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
WRITE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
ENCODE_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1)
_VERSION_NUMBER = re.compile(r"v(\d+)")


class Metrics:
    """One worker's metrics; ``scrape`` answers for every worker of the server."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

        directory = os.environ.get(DIR_VAR)
        self.directory = (
            directory if directory and values.ValueClass is not values.MutexValue else None
        )
        if directory and self.directory is None:
            log.warning(
                "%s was set after prometheus_client was imported: "
                "this worker's metrics are its own",
                DIR_VAR,
            )
        # in multiprocess mode the values live in files, and a scrape reads the files
        self.registry = None if self.directory else CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "simqa_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "simqa_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.writes = Counter(
            "simqa_writes",
            "Write requests (add, delete) by outcome: ok, refused (4xx: "
            "token, body, unknown id) or failed (5xx: busy, writer died, shutting down).",
            ["operation", "outcome"],
            registry=registry,
        )
        self.write_seconds = Histogram(
            "simqa_write_duration_seconds",
            "Time of a successful write, from its request to the new version published.",
            ["operation"],
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        self.write_queue = Gauge(
            "simqa_writes_in_progress",
            "Write requests received and not yet answered (running or waiting for the "
            "index's writer lock), over every worker.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.version = Gauge(
            "simqa_index_version",
            "The index version served (the number of its folder, vNNNNNN).",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.records = Gauge(
            "simqa_index_records",
            "Consultations in the index version served.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.encode_seconds = Histogram(
            "simqa_encode_duration_seconds",
            "Time the encoder took per call (one query, or a POST /v1/search batch).",
            buckets=ENCODE_BUCKETS,
            registry=registry,
        )
        self.encoded = Counter(
            "simqa_encoded_texts",
            "Texts the encoder embedded for searches.",
            registry=registry,
        )

    # --- what the worker reports ----------------------------------------------------------

    def index_served(self, index: Any) -> None:
        """Set the gauges of the index version this worker now answers from."""
        snapshot = getattr(index, "snapshot", None)
        name = snapshot.dir.name if snapshot is not None else ""
        match = _VERSION_NUMBER.fullmatch(name)
        if match:
            self.version.set(int(match.group(1)))
        self.records.set(len(index))

    def watch_encoder(self, encoder: Any) -> None:
        """Time every ``encode`` call of this (shared, loaded) encoder from now on."""
        if getattr(encoder, "_simqa_timed", False):
            return
        plain: Callable[..., Any] = encoder.encode
        seconds, texts = self.encode_seconds, self.encoded

        def encode(batch: Sequence[str], *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return plain(batch, *args, **kwargs)
            finally:
                seconds.observe(time.perf_counter() - started)
                texts.inc(len(batch))

        encoder.encode = encode
        encoder._simqa_timed = True

    def worker_exit(self) -> None:
        """A stopping worker leaves the live gauges (its counts stay in the totals)."""
        if self.directory:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.directory)

    # --- a scrape ---------------------------------------------------------------------------

    def scrape(self) -> tuple[bytes, str]:
        """The exposition text of every worker's numbers, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        for pid in self._dead_workers():
            multiprocess.mark_process_dead(pid, self.directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def _dead_workers(self) -> set[int]:
        """Workers with live gauges whose process is gone (killed before it could say so)."""
        dead = set()
        for path in glob.glob(os.path.join(str(self.directory), "gauge_live*_*.db")):
            pid = int(path.rsplit("_", 1)[1].removesuffix(".db"))
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                dead.add(pid)
            except PermissionError:
                continue
        return dead


class Measure:
    """The middleware counting and timing every request (outermost: a 304, a preflight
    and an error are counted like any answer)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Routes) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        route = route_of(scope, self.routes)
        write = is_write(method, route)
        status = 500  # if the app fails before it answers, the server answers 500

        async def seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self.metrics
        if write:
            metrics.write_queue.inc()
        try:
            await self.app(scope, receive, seen)
        finally:
            elapsed = time.perf_counter() - started
            metrics.requests.labels(method, route, str(status)).inc()
            metrics.latency.labels(method, route).observe(elapsed)
            if write:
                metrics.write_queue.dec()
                operation = "delete" if method == "DELETE" else "add"
                outcome = "ok" if status < 400 else "refused" if status < 500 else "failed"
                metrics.writes.labels(operation, outcome).inc()
                if outcome == "ok":
                    metrics.write_seconds.labels(operation).observe(elapsed)
