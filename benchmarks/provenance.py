"""What every raw benchmark result carries: the command, the date, the machine and versions.

Each benchmark writes one JSON file under ``benchmarks/results/`` through ``write``; the
README and RESULTS.md quote figures only from such files.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = (
    "simqa",
    "onnxruntime",
    "onnx",
    "torch",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "faiss-cpu",
    "hnswlib",
    "txtai",
    "numpy",
)


def machine() -> dict[str, Any]:
    """CPU model, cores, caches, SIMD flags, memory, Python and package versions."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache")
    info: dict[str, Any] = {}
    for line in lscpu.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keep:
            info[key.strip()] = value.strip()
    info["flags"] = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni") if f in lscpu)
    with open("/proc/meminfo") as handle:
        info["memory"] = f"{int(handle.readline().split()[1]) / 2**20:.0f} GiB"
    info["python"] = platform.python_version()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    info["versions"] = versions
    return info


def header() -> dict[str, Any]:
    """The provenance block: command line, UTC date, machine, load average at the start."""
    return {
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "load_average_start": os.getloadavg(),
    }


def write(name: str, data: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``data`` (with ``header()`` fields first) to ``benchmarks/results/NAME.json``."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**data, "load_average_end": os.getloadavg()}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of repeated measurements, and the values themselves."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def ratio_if_clear(faster: dict[str, Any], slower: dict[str, Any]) -> float | None:
    """median / median when the two spreads do not overlap (every run of ``faster`` above
    every run of ``slower``), else None: a ratio inside the noise is not claimed."""
    if faster["min"] > slower["max"]:
        return faster["median"] / slower["median"]
    return None
