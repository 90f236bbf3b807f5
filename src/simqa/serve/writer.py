"""A server's writes, made in a process of their own.

A write (encoding new questions, writing the next version of the index) is long work that
the serving process need not share: in a child it cannot take a worker down with it (a
writer killed mid-write costs that one request a 503, and nothing is published), and it
holds no GIL the readers wait for. The child stays up, so the model is loaded once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

from simqa.errors import SimqaError
from simqa.records import Consultation

if TYPE_CHECKING:
    from simqa.index import Index


class WriterGone(SimqaError):
    """The writing process died mid-write; the write was not published."""


class ShuttingDown(SimqaError):
    """The server is stopping: this write was not started; nothing was written."""


STOPPING = "the server is shutting down: nothing was written, send it again"


class Writer:
    """Adds and deletes through the index's own ``add`` / ``delete`` in one child process."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self._pool: ProcessPoolExecutor | None = None
        self.stopping = False
        self._waiting: set[Future[dict[str, int]]] = set()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:  # spawned: a fork would copy the server's threads and model
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_stop_signals,
            )
        return self._pool

    async def _run(self, *args: object) -> dict[str, int]:
        if self.stopping:
            raise ShuttingDown(STOPPING)
        future = self._executor().submit(_write, self.root, *args)
        self._waiting.add(future)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and self.stopping and not (task and task.cancelling()):
                raise ShuttingDown(STOPPING) from None  # dropped by stop() before it started
            raise
        except BrokenProcessPool:
            self.close()  # the next write starts a new process
            raise WriterGone(
                "the writing process died before the write was published; nothing was "
                "changed, send it again"
            ) from None
        finally:
            self._waiting.discard(future)

    async def add(self, records: list[Consultation]) -> dict[str, int]:
        return await self._run(records, [])

    async def delete(self, ids: list[str]) -> int:
        return (await self._run([], ids))["deleted"]

    def stop(self) -> None:
        """Take no more writes: those not started yet get ShuttingDown; the one being
        made (and the one handed to the process after it) finishes and is published."""
        self.stopping = True
        for future in list(self._waiting):
            future.cancel()  # only a write not handed to the process yet can be cancelled

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _ignore_stop_signals() -> None:
    """In the child: a SIGTERM or Ctrl-C sent to the whole process group must not cut a
    write short; the server stops the child once its write is answered."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: in the child: the index each write goes through, opened once (model loaded once)
_OPEN: dict[str, Index] = {}


def _write(root: str, records: list[Consultation], delete: list[str]) -> dict[str, int]:
    """Runs in the child: one atomic write through the index's own backend (the embedded
    files under their writer lock, or a Milvus collection)."""
    from simqa.index import open_index

    index = _OPEN.get(root)
    if index is None:
        index = _OPEN[root] = open_index(root, refresh_every=None)
    if delete:
        return {"deleted": index.delete(delete)}
    return index.add(records)
