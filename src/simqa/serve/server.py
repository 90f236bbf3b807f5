"""Start uvicorn: one worker in this process, or several, each building its own app."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from simqa.index import index_path, open_index
from simqa.serve.settings import TOKEN_VAR, Settings

#: uvicorn's exit status when the app could not start
STARTUP_FAILURE = 3


def serve(index: str | None = None, *, settings: Settings | None = None, **values: Any) -> None:
    """Serve until SIGTERM or Ctrl-C, with ``settings`` (``Settings.load``) or with ``index``
    and setting values (``host``, ``port``, ``workers``, ``write_token``, ...). A bad setting
    or a missing or broken index fails here, in one line, before any worker starts."""
    if settings is None:
        settings = Settings.of(**values, **({"index": index} if index is not None else {}))
    settings = settings.model_copy(update={"index": str(index_path(settings.index).resolve())})
    open_index(settings.index).close()
    signal.signal(signal.SIGTERM, _stopped)  # after a clean stop, leave with status 0
    metrics_dir = None
    if settings.metrics:  # every worker's numbers, in files a scrape adds up (metrics.py)
        metrics_dir = tempfile.mkdtemp(prefix="simqa-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.pop(TOKEN_VAR, None)
    os.environ.update(settings.to_env())  # what the workers read (uvicorn --workers N)
    config = uvicorn.Config(
        "simqa.serve.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=settings.access_log,
        log_level="info",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
    )
    try:
        if config.workers > 1:  # as uvicorn.run does, with a supervisor that stops listening
            Workers(config, sockets=[config.bind_socket()]).run()
        else:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:
                raise SystemExit(STARTUP_FAILURE)
    except KeyboardInterrupt:
        pass
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


class Workers(Multiprocess):
    """uvicorn's supervisor of several workers, which also stops listening the moment a
    stop signal arrives: its own copy of the listening socket would otherwise take
    connections that no worker answers (they wait, then are reset) until the last worker
    has finished its requests in flight. Closed, a new connection is refused at once, and
    a client or a load balancer can go elsewhere."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_listening()
        self.signal_queue.append(signum)  # uvicorn's own handling, in its loop

    def stop_listening(self) -> None:
        for sock in self.sockets:
            sock.close()

    def terminate_all(self) -> None:
        self.stop_listening()
        super().terminate_all()


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handling (before it starts, or re-raised by it once it
    has shut down): stop here, cleaning up on the way out."""
    raise SystemExit(0)
