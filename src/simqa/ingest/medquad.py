"""MedQuAD XML documents (github.com/abachaa/MedQuAD): one Consultation per QA pair.

Each file is one document about one focus (a disease, drug, ...) with several question
pairs. Mapping: title = the focus, question = the question text, reply = the answer (empty
in the three MedlinePlus subsets, whose answers were removed for copyright: those records
are still loaded, question only), department = the document's source ("GARD",
"CancerGov", ...), tags = [focus, question type], url = the document's URL.

Ids are ``<source>-<file stem>-<pair id>``, e.g. ``GARD-0000004-1``. The XML ``qid`` is not
used because it is not unique: document numbers restart in every subset, and CancerGov's
split documents (``0000013_2_1.xml`` ...) repeat their parent's qids.

Three layouts occur and are all read: ``<Document>`` (nearly all), ``<DiseaseFile>`` (one
CDC file) and ``<doc>/<pair>/<question>`` (four NINDS files).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from simqa.ingest.report import Problem
from simqa.ingest.text import decode, one_line, read_bytes, tidy
from simqa.records import Consultation

EXTENSIONS = (".xml",)
_ROOTS = {"Document", "DiseaseFile", "doc"}
_QUESTION_END = re.compile(r"\s*(\?\s*)+$")


_START = re.compile(r"\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*)*<(Document|DiseaseFile|doc)\b", re.S)


def sniff(head: str) -> bool:
    """An XML file whose root element is a MedQuAD document."""
    return bool(_START.match(head))


def _text(element: ET.Element | None) -> str:
    return "".join(element.itertext()) if element is not None else ""


def _first(parent: ET.Element, *tags: str) -> ET.Element | None:
    """The first child with one of ``tags`` (elements are falsy when childless: no ``or``)."""
    for tag in tags:
        found = parent.find(tag)
        if found is not None:
            return found
    return None


def read(path: Path) -> Iterator[Consultation | Problem]:
    data = read_bytes(path)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        decode(path, data)  # a non-UTF-8 file is the user's error to fix, said plainly
        yield Problem(str(path), err.position[0], f"not well-formed XML ({err})", unit="line")
        return
    if root.tag not in _ROOTS:
        yield Problem(str(path), None, f"not a MedQuAD document (root element <{root.tag}>)")
        return
    source = root.get("source") or root.get("corpus") or path.parent.name
    url = root.get("url", "")
    focus = one_line(_text(_first(root, "Focus", "doctitle-focus")))
    pairs = root.findall("QAPairs/QAPair") or root.findall("qaPairs/pair")
    if not pairs:
        yield Problem(str(path), None, "document has no question-answer pairs (nothing to load)",
                      skipped=False)
    for number, pair in enumerate(pairs, start=1):
        question_el = _first(pair, "Question", "question")
        answer_el = _first(pair, "Answer", "answer")
        question = _QUESTION_END.sub("?", one_line(_text(question_el)))
        if not question:
            yield Problem(str(path), number, "QA pair without a question", unit="record")
            continue
        qtype = question_el.get("qtype", "") if question_el is not None else ""
        yield Consultation(
            id=f"{source}-{path.stem}-{pair.get('pid') or number}",
            question=question,
            title=focus,
            reply=tidy(_text(answer_el)),
            department=source,
            tags=[t for t in (focus, qtype) if t],
            url=url,
            source="medquad",
        )
