"""Consultation pages in the plain-text layout of the seed page (one or many per file).

A page reads, line by line::

    TITLE
    QUESTION LINES ...
    NAME, 30~39 year old female. Ask Date: 2013/02/10      <- the asker line
    Dr. NAME reply DEPARTMENT
    REPLY LINES ...
    Reply Date: 2013/02/10
    More Info            (optional section: background text, not the doctor's reply)
    Similar Q&A          (optional: entries of title, question start, Dr line,
                          reply start ending in "[Read More] TITLE")
    Related FAQ          (optional: "Topic(Department)" lines, kept as the record's tags
                          with their departments: "Leg(Neurology)", see simqa.box.related)

Where pages start (several pages in one file): every page has exactly one asker line
(a line ending in ``Ask Date: <date>``). The title and question are the lines just above
it, after the end of the previous page. The previous page ends at the last
``Topic(Department)`` line of its Related FAQ section; without that section, at the last
``[Read More]`` line of its Similar Q&A section; without either, at the last blank line or
rule (``---``, ``===``, form feed) after its Reply Date. So pages may simply be concatenated,
and separating them with a blank line is always safe. A page whose start cannot be found
is reported and skipped.

Ids: a file holding one page whose name is ``<id>.txt`` or ``<n>_<id>.txt`` with a hex
``<id>`` of 8+ digits (the seed ``000_6d9dcf339530815c.txt``) keeps that id. Otherwise the id
is ``page-`` plus 16 hex digits of the SHA-1 of the normalised title and question, so the
same page gets the same id wherever it is loaded from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from simqa.box.related import join_tag
from simqa.errors import BadRecord
from simqa.ingest.report import Problem
from simqa.ingest.text import one_line, read_text, stable_id, tidy
from simqa.records import Consultation

EXTENSIONS = (".txt", ".page")

_ASKER = re.compile(r"^(?P<who>.*?)[\s.]*\bAsk Date:\s*(?P<date>\S.*?)\s*$")
_WHO = re.compile(r"^(?:(?P<name>.*?),\s*)?(?P<age>[^,]+?)\s+years?\s+old\s+(?P<sex>[A-Za-z]+)$")
_DOCTOR = re.compile(
    r"^Dr\.?\s*(?P<doctor>[^?!]{1,60}?)\s+reply(?:\s+(?P<dept>[^.,?!]{1,60}?))?\s*$")
_REPLY_DATE = re.compile(r"^Reply Date:\s*(?P<date>.*?)\s*$")
_FAQ = re.compile(  # "Leg Numbness(Neurology)": short, no sentence punctuation, unlike a title
    r"^(?P<topic>[^()?!.]{0,60}?)\s*\((?P<dept>[^()?!.]{0,60})\)$")
_RULE = re.compile(r"^([-=*_#~]{3,}|\f)$")
_ID_NAME = re.compile(r"^(?:\d+_)?(?P<id>[0-9a-fA-F]{8,64})$")
_READ_MORE = "[Read More]"
MORE_INFO, SIMILAR, FAQ = "More Info", "Similar Q&A", "Related FAQ"
_HEADERS = (MORE_INFO, SIMILAR, FAQ)


@dataclass
class _Span:
    start: int  # first line of the page's head (title)
    asker: int  # the asker line
    end: int  # one past the page's last line


def sniff(head: str) -> bool:
    """Does this text look like consultation pages?"""
    return any(_ASKER.match(line.strip()) for line in head.splitlines()) and bool(
        re.search(r"(?m)^\s*(Dr\.?\s.*\sreply\b|Reply Date:)", head))


def _is_separator(line: str) -> bool:
    stripped = line.strip()
    return not stripped or bool(_RULE.match(line.strip(" \t")))


def _is_structure(line: str) -> bool:
    stripped = line.strip()
    return stripped in _HEADERS or bool(_REPLY_DATE.match(stripped) or _DOCTOR.match(stripped))


def _page_end(lines: list[str], asker: int, limit: int) -> int | None:
    """Index one past the page whose asker line is ``asker``, given the next page's asker."""
    region = range(asker + 1, limit)
    stripped = {i: lines[i].strip() for i in region}
    faq = [i for i in region if stripped[i] == FAQ]
    if faq:
        j = faq[-1] + 1
        while j < limit and stripped[j] and _FAQ.match(stripped[j]):
            j += 1
        # a next title shaped like "Topic(Dept)" would be eaten; keep at least one line
        return min(j, limit - 1)
    similar = [i for i in region if stripped[i] == SIMILAR]
    if similar:
        more = [i for i in range(similar[-1] + 1, limit) if _READ_MORE in lines[i]]
        if more:
            return more[-1] + 1
    structure = [i for i in region if _is_structure(lines[i])]
    after = structure[-1] if structure else asker
    rules = [i for i in range(after + 1, limit) if _RULE.match(stripped[i])]
    blanks = [i for i in range(after + 1, limit) if not stripped[i]]
    if rules or blanks:
        return (rules or blanks)[-1] + 1
    return None


def _split(lines: list[str]) -> tuple[list[_Span], list[tuple[int, str]]]:
    """Pages as line spans, plus (line index, message) for pages that cannot be delimited."""
    askers = [i for i, line in enumerate(lines) if _ASKER.match(line.strip())]
    spans: list[_Span] = []
    problems: list[tuple[int, str]] = []
    start: int | None = 0
    for k, asker in enumerate(askers):
        limit = askers[k + 1] if k + 1 < len(askers) else len(lines)
        end = _page_end(lines, asker, limit) if k + 1 < len(askers) else len(lines)
        if start is None:
            problems.append((asker, "cannot tell where this page starts (the previous page has "
                             "no Related FAQ or Similar Q&A end and no blank line before it)"))
        else:
            spans.append(_Span(start, asker, end if end is not None else limit))
        start = end
    return spans, problems


def _parse_span(lines: list[str], span: _Span) -> Consultation:
    head = [line.strip() for line in lines[span.start : span.asker]]
    while head and _is_separator(head[0]):
        head.pop(0)
    if not head:
        raise ValueError("no title or question above the 'Ask Date' line")
    title, question = one_line(head[0]), tidy("\n".join(head[1:]))

    asker = _ASKER.match(lines[span.asker].strip())
    assert asker is not None  # spans are built from matching lines
    who = _WHO.match(asker.group("who").strip(" ,."))
    age, sex = (who.group("age").strip(), who.group("sex").lower()) if who else ("", "")

    body = [line.rstrip() for line in lines[span.asker + 1 : span.end]]
    i = 0
    while i < len(body) and not body[i].strip():
        i += 1
    doctor = department = ""
    if i < len(body) and (match := _DOCTOR.match(body[i].strip())):
        doctor, department = one_line(match.group("doctor")), one_line(match.group("dept"))
        i += 1
    reply: list[str] = []
    reply_date = ""
    while i < len(body):
        stripped = body[i].strip()
        if stripped in _HEADERS:
            break
        i += 1
        if match := _REPLY_DATE.match(stripped):
            reply_date = match.group("date")
            break
        reply.append(stripped)

    tags: list[str] = []
    topics: set[str] = set()
    faq = [j for j in range(i, len(body)) if body[j].strip() == FAQ]
    if faq:
        for line in body[faq[-1] + 1 :]:
            match = _FAQ.match(line.strip())
            if not match:
                break
            topic = one_line(match.group("topic"))
            if topic and topic.casefold() not in topics:  # "(Neurology)" alone names no topic
                topics.add(topic.casefold())
                tags.append(join_tag(topic, one_line(match.group("dept"))))
    return Consultation(
        id=stable_id("page", title, question), question=question, title=title,
        reply=tidy("\n".join(reply)), doctor=doctor, department=department, asker_sex=sex,
        asker_age=age, ask_date=asker.group("date"), reply_date=reply_date, tags=tags,
        source="page",
    )


def _id_from_name(name: str) -> str | None:
    match = _ID_NAME.match(Path(name).stem) if name else None
    return match.group("id") if match else None


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def parse_page(text: str, name: str = "") -> Consultation:
    """Parse the text of exactly one page; ``name`` (a file name) may give the id."""
    lines = _lines(text)
    spans, problems = _split(lines)
    if problems or len(spans) != 1:
        count = len(spans) + len(problems)
        raise BadRecord(f"{name or 'page'}: expected one consultation page, found {count} "
                        "(a page needs a line ending in 'Ask Date: <date>')")
    try:
        record = _parse_span(lines, spans[0])
    except ValueError as err:
        raise BadRecord(f"{name or 'page'}: {err}") from None
    record.id = _id_from_name(name) or record.id
    return record


def parse_similar_section(text: str) -> list[dict[str, str]]:
    """The entries of the (first) page's Similar Q&A section, in order.

    Each is ``{title, question_start, doctor, department, reply_start}``; ``reply_start`` is
    the text before ``[Read More]``. An unfinished last entry is left out.
    """
    lines = [line.strip() for line in _lines(text)]
    try:
        first = lines.index(SIMILAR) + 1
    except ValueError:
        return []
    entries: list[dict[str, str]] = []
    head: list[str] = []
    reply: list[str] = []
    doctor: re.Match[str] | None = None
    for line in lines[first:]:
        if line == FAQ or _ASKER.match(line):
            break
        if not line:
            continue
        if doctor is None:
            match = _DOCTOR.match(line)
            if match and head:
                doctor = match
            else:
                head.append(line)
            continue
        reply.append(line)
        if _READ_MORE in line:
            entries.append({
                "title": one_line(head[0]),
                "question_start": one_line(" ".join(head[1:])),
                "doctor": one_line(doctor.group("doctor")),
                "department": one_line(doctor.group("dept")),
                "reply_start": one_line(" ".join(reply).split(_READ_MORE, 1)[0]),
            })
            head, reply, doctor = [], [], None
    return entries


def read(path: Path) -> Iterator[Consultation | Problem]:
    lines = _lines(read_text(path))
    spans, problems = _split(lines)
    for index, message in problems:
        yield Problem(str(path), index + 1, message)
    if not spans and not problems:
        yield Problem(str(path), None, "no consultation page found (a page needs a line "
                      "ending in 'Ask Date: <date>')")
    named = _id_from_name(path.name) if len(spans) == 1 and not problems else None
    for span in spans:
        try:
            record = _parse_span(lines, span)
        except ValueError as err:
            yield Problem(str(path), span.asker + 1, str(err))
            continue
        if named:
            record.id = named
        yield record
