"""Read consultations from files: one loader per source format, one entry point.

``load(paths)`` takes files and directories (walked recursively, hidden entries skipped),
picks each file's loader from its extension and first bytes (or ``format=``), and yields
``Consultation`` records. Malformed records are skipped and reported with file and line
(or record) number in an ``IngestReport``; ``strict=True`` raises ``BadRecord`` at the
first one instead. A missing, unreadable, non-UTF-8 or unrecognised named file is a
``SimqaError``; files of no known format met while walking a directory are listed in
``report.ignored``. An id seen twice in one load is reported and the later record skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from simqa.errors import BadRecord, SimqaError
from simqa.ingest import covid, lasseregin, medquad, page, tabular
from simqa.ingest.page import parse_page, parse_similar_section
from simqa.ingest.report import IngestReport, Problem
from simqa.ingest.tabular import write_csv, write_jsonl
from simqa.records import Consultation

__all__ = [
    "FORMATS",
    "IngestReport",
    "Problem",
    "detect_format",
    "load",
    "parse_page",
    "parse_similar_section",
    "write_csv",
    "write_jsonl",
]

log = logging.getLogger("simqa.ingest")

Reader = Callable[[Path], Iterator[Consultation | Problem]]
_READERS: dict[str, Reader] = {
    "page": page.read,
    "jsonl": tabular.read_jsonl,
    "csv": tabular.read_csv,
    "medquad": medquad.read,
    "lasseregin": lasseregin.read,
    "covid": covid.read,
}
FORMATS: tuple[str, ...] = tuple(_READERS)
_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "page": page.EXTENSIONS,
    "jsonl": tabular.JSONL_EXTENSIONS,
    "csv": tabular.CSV_EXTENSIONS,
    "medquad": medquad.EXTENSIONS,
    "lasseregin": lasseregin.EXTENSIONS,
    "covid": covid.EXTENSIONS,
}
_HEAD_BYTES = 65536  # a page's asker line may follow a long question
_SHORT_HEAD = {".xml": 4096, ".json": 4096, ".jsonl": 4096, ".csv": 4096}


def _head(path: Path) -> str:
    """The first bytes as text, for sniffing; bad UTF-8 is reported here, naming the file."""
    size = _SHORT_HEAD.get(path.suffix.lower(), _HEAD_BYTES)
    try:
        with path.open("rb") as handle:
            data = handle.read(size)
    except FileNotFoundError:
        raise SimqaError(f"{path}: no such file") from None
    except OSError as err:
        raise SimqaError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if err.start < len(data) - 4 or len(data) < size:  # not a multi-byte char cut short
            line = data[: err.start].count(b"\n") + 1
            raise SimqaError(f"{path}: not UTF-8 text (bad byte 0x{data[err.start]:02x} at "
                             f"line {line}, byte offset {err.start})") from None
        return data[: err.start].decode("utf-8-sig")


def _looks_like_jsonl(head: str) -> bool:
    first = next((line.strip() for line in head.splitlines() if line.strip()), "")
    return first.startswith("{") and first.endswith("}")


def _looks_like_csv(head: str) -> bool:
    first = next((line for line in head.splitlines() if line.strip()), "")
    cells = {cell.strip().strip('"') for cell in first.split(",")}
    return "id" in cells and bool({"question", "title"} & cells)


_SNIFFERS: dict[str, Callable[[str], bool]] = {
    "medquad": medquad.sniff,
    "lasseregin": lasseregin.sniff,
    "jsonl": _looks_like_jsonl,
    "covid": covid.sniff,
    "page": page.sniff,
    "csv": _looks_like_csv,
}


def detect_format(path: str | Path) -> str | None:
    """The loader for a file from its extension and first 64 KiB, or None if unknown."""
    path = Path(path)
    head = _head(path)
    suffix = path.suffix.lower()
    by_extension = [name for name in _SNIFFERS if suffix in _EXTENSIONS[name]]
    for name in by_extension + [n for n in _SNIFFERS if n not in by_extension]:
        if _SNIFFERS[name](head):
            return name
    return None


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _plan(paths: Iterable[str | Path], format: str | None,
          report: IngestReport) -> list[tuple[Path, str]]:
    """(file, format) for every input, resolved before any record is read."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    plan: list[tuple[Path, str]] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = 0
            for member in _walk(path):
                if format and member.suffix.lower() not in _EXTENSIONS[format]:
                    fmt = None
                else:
                    fmt = format or detect_format(member)
                if fmt is None:
                    report.ignored.append(str(member))
                else:
                    plan.append((member, fmt))
                    found += 1
            if not found:
                kind = f"{format} " if format else ""
                raise SimqaError(f"{path}: no {kind}files of a known format in this directory")
        elif not path.exists():
            raise SimqaError(f"{path}: no such file or directory")
        else:
            fmt = format or detect_format(path)
            if fmt is None:
                raise SimqaError(f"{path}: cannot tell the format of this file; name it with "
                                 f"format= one of {', '.join(FORMATS)}")
            plan.append((path, fmt))
    return plan


def load(
    paths: Iterable[str | Path] | str | Path,
    format: str | None = None,
    strict: bool = False,
    report: IngestReport | None = None,
) -> Iterator[Consultation]:
    """Consultations from files and directories, in path order.

    Paths and formats are checked at once (a missing file raises here); records are read
    lazily. Problems go to ``report`` (or, without one, to the ``simqa.ingest`` logger).
    """
    if format is not None and format not in _READERS:
        raise SimqaError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    target = report if report is not None else IngestReport()
    plan = _plan(paths, format, target)
    return _records(plan, strict, target, log_problems=report is None)


def _records(plan: list[tuple[Path, str]], strict: bool, report: IngestReport,
             log_problems: bool) -> Iterator[Consultation]:
    seen: set[str] = set()

    def note(problem: Problem) -> None:
        report.problems.append(problem)
        if strict and problem.skipped:
            raise BadRecord(str(problem))
        if log_problems:
            log.warning("%s", problem)

    for path, fmt in plan:
        key = str(path)
        report.counts.setdefault(key, 0)
        produced = 0
        for item in _READERS[fmt](path):
            if isinstance(item, Problem):
                note(item)
                continue
            produced += 1
            if item.id in seen:
                note(Problem(key, produced, f"id {item.id!r} was already loaded; skipped",
                             unit="record"))
                continue
            seen.add(item.id)
            report.counts[key] += 1
            yield item
