"""Related FAQ: the topics listed under a consultation's Similar Q&A box.

A consultation page ends with links to the site's FAQ topics, each with the department that
answers it (``Leg(Neurology)``). simqa draws them from tags: the consultation's own tags
and its nearest neighbours', each neighbour's weighted by its cosine to the consultation
(its own count 1), summed per topic (case folded), best first. A neighbour's tag counts
only when it is a topic of the corpus, one that at least two consultations carry: most
scraped tags are a single question's phrase ("my right leg gets numb"). A topic's department is the
one its tag names (a page's ``Leg(Neurology)`` line is kept as that tag), else the department
of the consultation that carries it; the heaviest wins, and a topic with none is shown bare.
No department is ever made up.

What counts as a topic: every tag, except MedQuAD's, whose tags are ``[focus, question
type]``: only the focus ("Restless Legs Syndrome") is a topic, "symptoms" is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from simqa.records import Consultation, normalise

#: the seed page lists nine topics
TOPICS = 9
#: how many similar consultations' tags are pooled: more than a box shows, as few of
#: them carry a shared topic (on the quick-start index 10 often give none, 30 a handful)
NEIGHBOURS = 30
#: weight of the consultation's own tags; a neighbour's is its cosine (at most 1)
OWN_WEIGHT = 1.0
#: a neighbour's tag is a topic when at least this many consultations carry it: a FAQ
#: topic gathers questions, while most scraped tags are one question's own phrase
MIN_SHARED = 2

# "Leg(Neurology)": a department is a name (capital first letter) in parentheses right after
# the topic, as a page's Related FAQ line writes it; "fever(fmf)" or "Prothrombin time (PT)"
# are topics whose text holds parentheses, not departments
_TAG = re.compile(r"^(?P<topic>.*?[^\s(])\((?P<department>[A-Z][^()]*)\)$")


class _Scored(Protocol):
    score: float
    record: Consultation


@dataclass(frozen=True)
class Topic:
    """One Related FAQ entry."""

    topic: str
    department: str = ""

    def label(self) -> str:
        """As a page shows it: ``Leg(Neurology)``, or the bare topic."""
        return f"{self.topic}({self.department})" if self.department else self.topic

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "department": self.department}


def split_tag(tag: str) -> tuple[str, str]:
    """(topic, department) of a tag; the department is "" when the tag names none."""
    text = normalise(tag)
    match = _TAG.match(text)
    if not match:
        return text, ""
    return match.group("topic").strip(), match.group("department").strip()


def join_tag(topic: str, department: str) -> str:
    """The tag that keeps a topic's department, ``Leg(Neurology)`` (``split_tag``'s inverse)."""
    topic, department = normalise(topic), normalise(department)
    candidate = f"{topic}({department})"
    return candidate if department and split_tag(candidate) == (topic, department) else topic


def topics_of(record: Consultation) -> list[tuple[str, str]]:
    """The (topic, department) pairs a consultation is tagged with, in its own order."""
    tags = record.tags[:1] if record.source == "medquad" else record.tags
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for tag in tags:
        topic, department = split_tag(tag)
        if topic and topic.casefold() not in seen:
            seen.add(topic.casefold())
            found.append((topic, department or normalise(record.department)))
    return found


def related_faq(
    own: Consultation | None,
    hits: Sequence[_Scored],
    counts: Mapping[str, int] | None = None,
    limit: int = TOPICS,
) -> list[Topic]:
    """The topics of ``own`` (None for a free-text query) and its ``hits``, best first;
    ``counts`` (``Index.tag_counts()``) keeps only the neighbours' shared topics."""
    neighbours = [(topics_of(hit.record), float(hit.score)) for hit in hits]
    return rank_topics(topics_of(own) if own else [], neighbours, counts, limit)


def rank_topics(
    own: list[tuple[str, str]],
    neighbours: Iterable[tuple[list[tuple[str, str]], float]],
    counts: Mapping[str, int] | None = None,
    limit: int = TOPICS,
) -> list[Topic]:
    """Pool the own topics (weight 1) and ``(topics_of(neighbour), cosine)`` pairs into the
    ``limit`` heaviest topics. With ``counts``, a neighbour's topic must be one of the own
    topics or be carried by ``MIN_SHARED`` consultations of the corpus."""
    mine = {topic.casefold() for topic, _ in own}
    weight: dict[str, float] = {}
    forms: dict[str, dict[str, float]] = {}
    departments: dict[str, dict[str, float]] = {}
    for topics, w in [(own, OWN_WEIGHT), *neighbours]:
        if w <= 0:
            continue
        for topic, department in topics:
            key = topic.casefold()
            if counts is not None and key not in mine and counts.get(key, 0) < MIN_SHARED:
                continue
            weight[key] = weight.get(key, 0.0) + w
            _add(forms.setdefault(key, {}), topic, w)
            if department:
                _add(departments.setdefault(key, {}), department, w)
    order = sorted(weight, key=lambda key: -weight[key])  # stable: first seen wins ties
    return [
        Topic(_display(forms[key]), _heaviest(departments.get(key, {}).items()))
        for key in order[:limit]
    ]


def _add(counts: dict[str, float], value: str, w: float) -> None:
    counts[value] = counts.get(value, 0.0) + w


def _heaviest(items: Iterable[tuple[str, float]]) -> str:
    best, best_w = "", 0.0
    for value, w in items:  # insertion order: the first seen wins ties
        if w > best_w:
            best, best_w = value, w
    return best


def _display(forms: dict[str, float]) -> str:
    """The spelling to show: a capitalised one if any source has it ("Leg" over "leg")."""
    cased = {form: w for form, w in forms.items() if form != form.lower()}
    if cased:
        return _heaviest(cased.items())
    form = _heaviest(forms.items())
    return form[:1].upper() + form[1:]
