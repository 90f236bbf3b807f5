"""The LasseRegin scraped Q&A files (icliniqQAs.json, questionDoctorQAs.json, ehealthforumQAs.json).

Each file is a JSON list of ``{question, question_text?, answer, answer_author?, tags, url}``.
QuestionDoctors lists one item per doctor's reply, so items are grouped by URL (by question
text when there is none) into one Consultation per question: the first reply in file order
fills ``reply``/``doctor``, the others go to ``other_replies``.

Mapping: title = ``question`` tidied with a capital first letter (the site titles are all
lower case); question = ``question_text`` without the scraped tabs and blank runs, or the
title when absent (eHealthForum); doctor = ``answer_author`` without its "Dr"/"Dr." prefix;
the scraper's ``--> <link>`` placeholders are removed from replies; asker age and sex are
taken from the question when it says e.g. "I am a 24 year old female".
Source is the site (``icliniq``, ``questiondoctors``, ``ehealthforum``) and the id is
``<source>-<URL slug>`` (long slugs are cut and end in a short hash of the URL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simqa.ingest.report import Problem
from simqa.ingest.text import demographics, one_line, read_text, stable_id, tidy, url_slug
from simqa.records import Consultation, Reply

EXTENSIONS = (".json",)
SITES = ("icliniq", "questiondoctors", "ehealthforum")
_LINK = re.compile(r"\s*(?:-->\s*)?<link>")
#: the scraped "Question:" label that starts some QuestionDoctors question texts
_LABEL = re.compile(r"^\s*question\s*:\s*", re.IGNORECASE)
_DR = re.compile(r"^Dr\.?\s*", re.IGNORECASE)


def sniff(head: str) -> bool:
    return head.lstrip().startswith("[") and '"question"' in head and '"answer"' in head


def _source(url: str, path: Path) -> str:
    for text in (url.lower(), path.name.lower().replace("questiondoctor", "questiondoctors")):
        for site in SITES:
            if site in text:
                return site
    return "lasseregin"


def _doctor(author: Any) -> str:
    name = _DR.sub("", one_line(str(author or "")))
    return "" if name.lower() == "unknown" else name


def _title(text: str) -> str:
    title = one_line(text)
    return title[:1].upper() + title[1:]


def read(path: Path) -> Iterator[Consultation | Problem]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        yield Problem(str(path), err.lineno, f"invalid JSON ({err.msg}); file skipped")
        return
    if not isinstance(data, list):
        yield Problem(str(path), None, "expected a JSON list of questions; file skipped")
        return
    groups: dict[str, list[dict[str, Any]]] = {}
    numbers: dict[str, int] = {}
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict) or not one_line(str(item.get("question") or "")):
            yield Problem(str(path), number, "item without a question", unit="record")
            continue
        url = one_line(str(item.get("url") or ""))
        key = url or one_line(str(item["question"])).lower()
        groups.setdefault(key, []).append(item)
        numbers.setdefault(key, number)
    seen: set[str] = set()
    for key, items in groups.items():
        first = items[0]
        url = one_line(str(first.get("url") or ""))
        source = _source(url, path)
        title = _title(str(first["question"]))
        question = tidy(_LABEL.sub("", str(first.get("question_text") or ""))) or title
        replies = [Reply(text=tidy(_LINK.sub("", str(it.get("answer") or ""))),
                         doctor=_doctor(it.get("answer_author"))) for it in items]
        replies = [r for r in replies if r.text] or [Reply(text="")]
        tags: list[str] = []
        for it in items:
            for tag in it.get("tags") or []:
                tag = one_line(str(tag))
                if tag and tag not in tags:
                    tags.append(tag)
        record_id = f"{source}-{url_slug(url)}" if url else stable_id(source, title, question)
        if record_id in seen:  # two URLs with the same last segment
            record_id = stable_id(source, key)
        seen.add(record_id)
        age, sex = demographics(question)
        try:
            yield Consultation(
                id=record_id, question=question, title=title, reply=replies[0].text,
                doctor=replies[0].doctor, asker_age=age, asker_sex=sex, tags=tags, url=url,
                source=source, other_replies=replies[1:],
            )
        except ValueError as err:
            yield Problem(str(path), numbers[key], str(err), unit="record")
