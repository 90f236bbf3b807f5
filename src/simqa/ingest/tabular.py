"""JSONL and CSV files whose fields are the Consultation field names.

JSONL: one JSON object per line; blank lines are allowed. CSV: a header row naming the
columns; ``tags`` is ``;``-separated and ``other_replies`` a JSON list. Unknown keys and
columns are ignored. A record without ``id``, or without both ``title`` and ``question``,
is reported with its line number and skipped. ``write_jsonl``/``write_csv`` write the
same layout back, so an export loads again unchanged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from simqa.ingest.report import Problem
from simqa.ingest.text import iter_lines
from simqa.records import Consultation

JSONL_EXTENSIONS = (".jsonl", ".ndjson")
CSV_EXTENSIONS = (".csv",)
COLUMNS = [f.name for f in fields(Consultation)]


def _record(data: Any, path: Path, line: int) -> Consultation | Problem:
    if not isinstance(data, dict):
        return Problem(str(path), line, f"expected an object, got {type(data).__name__}")
    try:
        return Consultation.from_dict(data)
    except (ValueError, TypeError, AttributeError) as err:
        return Problem(str(path), line, _reason(err))


def _reason(err: Exception) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"other_replies is not valid JSON ({err.msg})"
    if isinstance(err, (TypeError, AttributeError)):
        return f"malformed record ({err})"
    return str(err)


def read_jsonl(path: Path) -> Iterator[Consultation | Problem]:
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            yield Problem(str(path), number, f"invalid JSON ({err.msg}, column {err.colno})")
            continue
        yield _record(data, path, number)


def read_csv(path: Path) -> Iterator[Consultation | Problem]:
    # csv.reader over our own line iterator: it keeps physical line numbers (a quoted
    # field may span lines) and our iterator turns bad bytes into a SimqaError.
    reader = csv.reader(line for _, line in iter_lines(path))
    header: list[str] | None = None
    last = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            yield Problem(str(path), last + 1, f"unreadable CSV ({err}); rest of file skipped")
            return
        start, last = last + 1, reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            missing = [] if "id" in header else ["'id'"]
            if not {"question", "title"} & set(header):
                missing.append("'question' or 'title'")
            if missing:
                yield Problem(str(path), start, f"CSV header has no {' and no '.join(missing)} "
                              f"column (header: {', '.join(header)}); file skipped")
                return
            continue
        if len(row) != len(header):
            yield Problem(str(path), start, f"row has {len(row)} cells, header has {len(header)}")
            continue
        data: dict[str, Any] = {k: v for k, v in zip(header, row, strict=True) if v != ""}
        if "tags" in data:  # ';' only, so a tag may hold a comma
            data["tags"] = [t.strip() for t in data["tags"].split(";") if t.strip()]
        yield _record(data, path, start)


def write_jsonl(records: Iterable[Consultation], path: str | Path) -> int:
    """Write records one JSON object a line; returns how many."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def write_csv(records: Iterable[Consultation], path: str | Path) -> int:
    """Write records with a header row (tags ``;``-joined, other_replies as JSON)."""
    n = 0
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        for record in records:
            row = record.to_dict()
            row["tags"] = ";".join(record.tags)
            row["other_replies"] = json.dumps(row["other_replies"], ensure_ascii=False) \
                if record.other_replies else ""
            writer.writerow(row)
            n += 1
    return n
