"""A Milvus standalone server on this machine, for the tests and the benchmarks.

PyPI's ``milvus`` package ships the Milvus 2.3 standalone binary (with its own etcd and
message queue); this starts it on a free loopback port with its data under a folder of
the caller's, waits until it answers, and stops it, so nothing is left running.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from types import TracebackType
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedMilvus:
    """``with EmbeddedMilvus(folder) as server: server.uri`` -> ``http://127.0.0.1:PORT``."""

    def __init__(
        self, data_dir: Path, port: int | None = None, time_tick_ms: int | None = None
    ) -> None:
        from milvus import MilvusServer, MilvusServerConfig

        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.server: Any = MilvusServer(MilvusServerConfig(data_dir=str(self.data_dir)))
        self.server.config.configs["proxy_port"] = self.port
        if time_tick_ms is not None:  # what a Strong-consistency read waits for at most
            self.server.config.set("proxy.timeTickInterval", int(time_tick_ms))

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return int(self.server.server_proc.pid)

    def start(self) -> EmbeddedMilvus:
        self.server.start()  # returns once /healthz says OK
        return self

    def stop(self) -> None:
        if self.server.server_proc is not None:
            self.resume()
            self.server.stop()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def __enter__(self) -> EmbeddedMilvus:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
