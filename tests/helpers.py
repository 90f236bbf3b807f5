"""What several test modules share: a real ``simqa serve`` process, and the shared data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import simqa
from simqa.ingest import load

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"
SEED = SHARED / "seeds" / "000_6d9dcf339530815c.txt"
SEED_ID = "6d9dcf339530815c"
QUESTION_DOCTOR = DATA / "lasseregin_medical_qa" / "questionDoctorQAs.json"
MEQSUM = DATA / "meqsum" / "meqsum.derived.jsonl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m simqa serve`` in its own process group, stopped at the end."""

    def __init__(
        self,
        index: Path,
        log: Path,
        *args: str,
        token: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if k != "SIMQA_WRITE_TOKEN"} | (env or {})
        if token:
            env["SIMQA_WRITE_TOKEN"] = token
        command = [sys.executable, "-m", "simqa", "serve", "--index", str(index)]
        command += ["--port", str(self.port), "--no-access-log", *args]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"server not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, timeout=120, **kwargs)

    def delete(self, path: str, **kwargs) -> httpx.Response:
        return httpx.delete(self.url + path, timeout=120, **kwargs)


def small_index(path: Path) -> Path:
    """The seed page and 200 QuestionDoctors consultations, built at ``path``."""
    records = list(load([SEED])) + list(load([QUESTION_DOCTOR]))[:200]
    simqa.build(records, path).close()
    return path


def chromium():
    """A headless Chromium (selenium), phone-sized; skips the test without chromedriver."""
    import shutil

    import pytest

    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        pytest.skip("chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=412,915")  # a phone's screen
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    return driver
