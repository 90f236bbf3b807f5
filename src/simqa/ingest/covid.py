"""COVID-Dialogue-Dataset-English (github.com/UCSD-AI4H/COVID-Dialogue) text blocks.

A block is::

    id=N
    URL
    Description
    <patient's summary, one or more lines>
    Dialogue
    Patient:
    <turn>
    Doctor:
    <turn>
    ...

Mapping: id = ``covid-N``, title = the Description, question = the patient's first turn,
reply = the doctor's first turn (later turns answer follow-up questions, not the one asked,
so they are not kept), url = the URL, source = the site from the URL's host
(``healthtap``, ``healthcaremagic``, ``icliniq``), asker age and sex when the question
states them.

The published file has 604 blocks but its README says 603: ``id=18`` is used twice, for two
different consultations. Both are loaded; a repeated number gets a suffix (``covid-18-2``)
and a warning in the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from simqa.ingest.report import Problem
from simqa.ingest.text import demographics, one_line, read_text, tidy
from simqa.records import Consultation

EXTENSIONS = (".txt",)
_ID = re.compile(r"^id=(\d+)\s*$")
_TURN = re.compile(r"^(Patient|Doctor):\s*(.*)$")


def sniff(head: str) -> bool:
    lines = [line for line in head.splitlines() if line.strip()]
    return bool(lines) and bool(_ID.match(lines[0].strip())) and "Dialogue" in head


def _site(url: str) -> str:
    host = urlparse(url).hostname or ""
    parts = [p for p in host.split(".") if p not in ("www", "m")]
    return parts[0] if parts else "covid"


def _parse(block: list[str]) -> tuple[str, str, str, str, str]:
    """(url, description, first patient turn, first doctor turn, error)."""
    lines = [line.strip() for line in block]
    url = next((line for line in lines if line), "")
    if not re.match(r"^https?://", url):
        return "", "", "", "", "no URL line after id="
    try:
        start = lines.index("Description") + 1
        dialogue = lines.index("Dialogue", start)
    except ValueError:
        return "", "", "", "", "no 'Description' and 'Dialogue' lines"
    turns: list[tuple[str, list[str]]] = []
    for line in lines[dialogue + 1 :]:
        match = _TURN.match(line)
        if match:
            turns.append((match.group(1), [match.group(2)]))
        elif turns:
            turns[-1][1].append(line)
    first = {}
    for who, text in turns:
        first.setdefault(who, tidy("\n".join(text)))
    return url, one_line(" ".join(lines[start:dialogue])), first.get("Patient", ""), \
        first.get("Doctor", ""), ""


def read(path: Path) -> Iterator[Consultation | Problem]:
    # the file mixes CRLF, LF and lone CRs inside turns: split on LF only so line numbers
    # agree with an editor, and read a lone CR as a line break within the text
    lines = read_text(path).split("\n")
    starts = [i for i, line in enumerate(lines) if _ID.match(line.strip())]
    if not starts:
        yield Problem(str(path), None, "no 'id=N' block found")
        return
    if any(line.strip() for line in lines[: starts[0]]):
        yield Problem(str(path), 1, "text before the first 'id=' line ignored", skipped=False)
    used: dict[str, int] = {}
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        number = _ID.match(lines[start].strip()).group(1)  # type: ignore[union-attr]
        block = [part for line in lines[start + 1 : end] for part in line.split("\r")]
        url, title, question, reply, error = _parse(block)
        if error:
            yield Problem(str(path), start + 1, error)
            continue
        record_id = f"covid-{number}"
        used[record_id] = used.get(record_id, 0) + 1
        if used[record_id] > 1:
            first_id, record_id = record_id, f"{record_id}-{used[record_id]}"
            yield Problem(str(path), start + 1, f"id={number} used again; loaded as {record_id} "
                          f"(the first stays {first_id})", skipped=False)
        age, sex = demographics(question)
        try:
            yield Consultation(id=record_id, question=question, title=title, reply=reply,
                               asker_age=age, asker_sex=sex, url=url, source=_site(url))
        except ValueError as err:
            yield Problem(str(path), start + 1, str(err))
