"""A server's writes, made in a process of their own, queued writes published together.

A write (encoding new questions, writing the next version of the index) is long work that
the serving process need not share: in a child it cannot take a worker down with it (a
writer killed mid-write costs its requests a 503, and nothing is published), and it holds
no GIL the readers wait for. The child starts with the server and stays up, so the model
is loaded once, before the first write.

Writes that arrive while the child is busy wait in a queue, and the child takes the whole
queue at once: applied in order and published as one version (``Index.apply``), each
request answered with its own counts. A burst of writes then costs a few versions, not
one per request. Should the batch be refused (a write in it would delete every
consultation), its writes are made one by one, so only the offending one fails. After a
write the child starts a compaction in a thread of its own when the deltas need one
(``simqa.index.compact``), so no request waits for it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simqa.errors import SimqaError
from simqa.records import Consultation

if TYPE_CHECKING:
    from simqa.index import Index

#: one queued write: ("add", records) or ("delete", ids)
Write = tuple[str, Any]


class WriterGone(SimqaError):
    """The writing process died mid-write; the write was not published."""


class ShuttingDown(SimqaError):
    """The server is stopping: this write was not started; nothing was written."""


STOPPING = "the server is shutting down: nothing was written, send it again"


class Writer:
    """Adds and deletes through the index's own backend in one child process."""

    def __init__(self, root: Path, warm: bool = True) -> None:
        self.root = str(root)
        self._pool: ProcessPoolExecutor | None = None
        self.stopping = False
        self._queue: list[tuple[Write, asyncio.Future]] = []
        self._draining: asyncio.Task | None = None
        #: how many writes each published batch held (for tests and benchmarks)
        self.batches: list[int] = []
        if warm:  # the child starts now and loads the index and the model: the first
            self._executor().submit(_warm, self.root)  # write does not wait for them

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:  # spawned: a fork would copy the server's threads and model
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_stop_signals,
            )
        return self._pool

    async def add(self, records: list[Consultation]) -> dict[str, Any]:
        return await self._submit(("add", records))

    async def delete(self, ids: list[str]) -> int:
        return (await self._submit(("delete", ids)))["deleted"]

    async def delete_many(self, ids: list[str]) -> dict[str, Any]:
        """Delete ``ids`` in one version: {"deleted": n, "missing": [ids not there], ...}."""
        return await self._submit(("delete", ids))

    async def _submit(self, write: Write) -> dict[str, Any]:
        if self.stopping:
            raise ShuttingDown(STOPPING)
        future = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Hand the child everything queued, batch after batch, until the queue is empty."""
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            self.batches.append(len(batch))
            try:
                outcomes = await loop.run_in_executor(
                    self._executor(), _write, self.root, [write for write, _ in batch]
                )
            except BrokenProcessPool:
                self.close()  # the next write starts a new process
                gone = WriterGone(
                    "the writing process died before the write was published; nothing was "
                    "changed, send it again"
                )
                outcomes = [(False, gone)] * len(batch)
            except Exception as exc:  # every request of the batch hears of it
                outcomes = [(False, exc)] * len(batch)
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():  # its request went away meanwhile
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def stop(self) -> None:
        """Take no more writes: those still queued get ShuttingDown; the batch handed to the
        process already finishes and is published (and its requests answered)."""
        self.stopping = True
        queued, self._queue = self._queue, []
        for _, future in queued:
            if not future.done():
                future.set_exception(ShuttingDown(STOPPING))

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


def _open(root: str) -> Index:
    from simqa.index import open_index

    index = _OPEN.get(root)
    if index is None:
        index = _OPEN[root] = open_index(root, refresh_every=None)
    return index


def _warm(root: str) -> None:
    """Runs in the child as it starts: the index opened and the model loaded."""
    index = _open(root)
    encoder = getattr(index, "encoder", None)
    if encoder is not None:
        encoder.encode(["warm up the model"])


def _write(root: str, writes: list[Write]) -> list[tuple[bool, Any]]:
    """Runs in the child: the writes through the index's own backend (the embedded files
    under their writer lock, as one version; or a Milvus collection); (True, counts) or
    (False, error) for each."""
    index = _open(root)
    try:
        outcomes = [(True, result) for result in index.apply(writes)]
    except SimqaError as exc:  # nothing was published: find the write at fault
        outcomes = [_one(index, write) for write in writes] if len(writes) > 1 else [(False, exc)]
    index.compact(force=False, background=True)
    return outcomes


def _one(index: Index, write: Write) -> tuple[bool, Any]:
    try:
        return True, index.apply([write])[0]
    except SimqaError as exc:
        return False, exc
