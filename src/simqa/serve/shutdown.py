"""A clean stop on SIGTERM (systemd, a container runtime) or Ctrl-C.

uvicorn, told to stop, closes its listening socket, lets every request in flight finish
(up to ``shutdown_timeout`` seconds) and only then shuts the app down. What the app adds,
at the moment the signal arrives: ``/healthz`` answers 503 (a load balancer stops sending
traffic), and the worker's ``Writer`` stops taking writes: a write that has not started
gets a 503 saying nothing was written and to send it again, while the write already being
made finishes, is published and is answered. A version is either published whole and
acknowledged, or not written at all.

The writing process ignores the signals, so a signal sent to the whole process group
(systemd's default) cannot cut a write short: it finishes, and then its worker stops it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("simqa.serve")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signal(begin_stop: Callable[[], None]) -> bool:
    """Call ``begin_stop`` (on this event loop) as soon as a stop signal arrives, before the
    server's own handler (uvicorn's) starts draining. False where signals cannot be watched
    (the app is not running in the main thread, e.g. under a test client)."""
    loop = asyncio.get_running_loop()
    try:
        for sig in STOP_SIGNALS:
            previous = signal.getsignal(sig)
            signal.signal(sig, _chained(loop, begin_stop, previous))
    except ValueError:  # not the main thread
        return False
    return True


def _chained(
    loop: asyncio.AbstractEventLoop, begin_stop: Callable[[], None], previous: Any
) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        # a signal handler must not take locks the interrupted code may hold: run it soon
        loop.call_soon_threadsafe(begin_stop)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:  # what the signal did before: do it now
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    return handler
