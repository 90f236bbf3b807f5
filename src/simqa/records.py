"""The one record model for a consultation, shared by every loader, the store and the renderers."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime
from typing import Any

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Fold Unicode compatibility forms and collapse whitespace, so equal text embeds equally."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text or "")).strip()


_NUMERIC_DATE = re.compile(r"(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2}))?)?(?=$|[ T])")
_WORDY_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%B %Y", "%b %Y")


def iso_date(text: str) -> str:
    """A date as ISO text (``2013-02-10``, or ``2013-02`` / ``2013`` when that is all it
    says), or "" when it is not a date; sites write ``2013/02/10``, ``2013.2.10``,
    ``Feb 10, 2013``... Day-first numeric forms are ambiguous and left out."""
    text = normalise(text)
    match = _NUMERIC_DATE.match(text)
    if match:
        year, month, day = match.groups()
        try:
            if day:
                return date(int(year), int(month), int(day)).isoformat()
            if month:
                return date(int(year), int(month), 1).isoformat()[:7]
        except ValueError:
            return ""
        return year
    for fmt in _WORDY_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        return parsed.isoformat() if "%d" in fmt else parsed.isoformat()[:7]
    return ""


@dataclass
class Reply:
    """A further doctor's reply to the same question (sites often have several)."""

    text: str
    doctor: str = ""
    department: str = ""
    date: str = ""


@dataclass
class Consultation:
    """A patient's question with its doctor's reply and the page's metadata.

    ``reply``/``doctor``/``department``/``reply_date`` hold the first (shown) reply;
    ``other_replies`` keeps the rest. Empty strings mean "not known".
    """

    id: str
    question: str
    title: str = ""
    reply: str = ""
    doctor: str = ""
    department: str = ""
    asker_sex: str = ""
    asker_age: str = ""
    ask_date: str = ""
    reply_date: str = ""
    tags: list[str] = field(default_factory=list)
    url: str = ""
    source: str = ""
    other_replies: list[Reply] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.id = str(self.id).strip()
        if not self.id:
            raise ValueError("record has no id")
        if not self.question.strip() and not self.title.strip():  # cheap: runs per fetched hit
            raise ValueError(f"record {self.id!r} has neither a title nor a question")

    def embedding_text(self, fields_: str = "title+question", max_chars: int = 2000) -> str:
        """The text that represents this consultation in the vector index.

        ``fields_`` is ``title``, ``question`` or ``title+question``; a missing part falls back
        to the other so that no record embeds as empty text.
        """
        return embedding_text(self.title, self.question, fields_, max_chars)

    def content_hash(self, fields_: str = "title+question") -> str:
        """A hash of the embedded text: re-ingesting an unchanged question embeds nothing again."""
        return hashlib.sha1(self.embedding_text(fields_).encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Consultation:
        """Build a record from a mapping, ignoring unknown keys and coercing obvious types."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known and v is not None}
        for key, value in list(kwargs.items()):
            if key == "tags":
                if isinstance(value, str):
                    value = [t.strip() for t in re.split(r"[;,|]", value) if t.strip()]
                kwargs[key] = [str(t) for t in value]
            elif key == "other_replies":
                if isinstance(value, str):
                    value = json.loads(value) if value.strip() else []
                kwargs[key] = [r if isinstance(r, Reply) else Reply(**r) for r in value]
            else:
                kwargs[key] = str(value)
        if "id" not in kwargs:
            raise ValueError("record has no id")
        if "question" not in kwargs:
            kwargs["question"] = ""
        return cls(**kwargs)


def embedding_text(
    title: str, question: str, fields_: str = "title+question", max_chars: int = 2000
) -> str:
    """``Consultation.embedding_text`` of a title and a question (no record needed)."""
    title, question = normalise(title), normalise(question)
    if fields_ == "title":
        text = title or question
    elif fields_ == "question":
        text = question or title
    elif fields_ == "title+question":
        if title and question and not question.lower().startswith(title.lower()):
            text = f"{title}. {question}" if title[-1] not in ".?!" else f"{title} {question}"
        else:
            text = question or title
    else:
        raise ValueError(f"unknown embedding fields {fields_!r}")
    return text[:max_chars]
