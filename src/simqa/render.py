"""Lay hits out as a "Similar Q&A" section: plain text like the reference page, JSON,
Markdown or HTML for a site to embed."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from simqa.errors import SimqaError
from simqa.index import Hit
from simqa.records import Consultation, normalise

FORMATS = ("text", "json", "markdown", "html")
HEADING = "Similar Q&A"
QUESTION_CHARS = 270
REPLY_CHARS = 270
NO_REPLY = "(reply not available)"


def excerpt(text: str, limit: int) -> str:
    """The start of ``text``, cut at a word boundary with "..." when it is longer than ``limit``."""
    text = normalise(text)
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else text[:limit]
    return cut.rstrip(" ,;:-") + "..."


def title_of(record: Consultation) -> str:
    return normalise(record.title) or excerpt(record.question, 80)


def byline(record: Consultation) -> str:
    """ "Dr. NAME reply DEPARTMENT", or the closest thing the record knows."""
    doctor = normalise(record.doctor)
    department = normalise(record.department)
    if doctor:
        name = doctor if doctor.lower().startswith("dr") else f"Dr. {doctor}"
        return f"{name} reply {department}".strip()
    if department:
        return f"Reply from {department}"
    return f"Reply from {record.source}" if record.source else "Reply"


def nothing_found(min_score: float | None) -> str:
    if min_score is None or min_score <= -1:
        return "Nothing similar was found."
    return f"Nothing similar was found (no consultation scored {min_score:.2f} or more)."


def render(hits: Sequence[Hit], format: str = "text", *, min_score: float | None = None) -> str:
    """The hits as a section in ``format`` (text, json, markdown or html)."""
    if format == "json":
        return json.dumps([h.to_json() for h in hits], ensure_ascii=False, indent=2)
    if format == "text":
        return _text(hits, min_score)
    if format == "markdown":
        return _markdown(hits, min_score)
    if format == "html":
        return _html(hits, min_score)
    raise SimqaError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")


def _text(hits: Sequence[Hit], min_score: float | None) -> str:
    lines = [HEADING]
    if not hits:
        lines.append(nothing_found(min_score))
    for hit in hits:
        r = hit.record
        title = title_of(r)
        reply = excerpt(r.reply, REPLY_CHARS) or NO_REPLY
        lines += [
            title,
            excerpt(r.question, QUESTION_CHARS),
            byline(r),
            f"{reply}[Read More] {title}",
        ]
    return "\n".join(lines)


def _markdown(hits: Sequence[Hit], min_score: float | None) -> str:
    def esc(text: str) -> str:
        return "".join("\\" + c if c in "\\`*_[]<>#|" else c for c in text)

    parts = [f"## {HEADING}", ""]
    if not hits:
        parts += [nothing_found(min_score), ""]
    for hit in hits:
        r = hit.record
        title = esc(title_of(r))
        heading = f"### [{title}]({r.url})" if r.url else f"### {title}"
        reply = esc(excerpt(r.reply, REPLY_CHARS)) or NO_REPLY
        more = f" [Read More]({r.url})" if r.url else ""
        parts += [
            heading,
            "",
            f"> {esc(excerpt(r.question, QUESTION_CHARS))}",
            "",
            f"**{esc(byline(r))}**",
            "",
            f"{reply}{more}",
            "",
        ]
    return "\n".join(parts).rstrip() + "\n"


def _html(hits: Sequence[Hit], min_score: float | None) -> str:
    e = html.escape
    parts = [f'<section class="similar-qa">\n<h2>{e(HEADING)}</h2>']
    if not hits:
        parts.append(f'<p class="none">{e(nothing_found(min_score))}</p>')
    for hit in hits:
        r = hit.record
        title = e(title_of(r))
        link = f'<a href="{e(r.url)}">{title}</a>' if r.url else title
        more = f' <a class="more" href="{e(r.url)}">[Read More] {title}</a>' if r.url else ""
        reply = e(excerpt(r.reply, REPLY_CHARS)) or e(NO_REPLY)
        parts.append(
            f'<article data-id="{e(r.id)}" data-score="{hit.score:.4f}">\n'
            f"<h3>{link}</h3>\n"
            f'<p class="question">{e(excerpt(r.question, QUESTION_CHARS))}</p>\n'
            f'<p class="byline">{e(byline(r))}</p>\n'
            f'<p class="reply">{reply}{more}</p>\n'
            "</article>"
        )
    parts.append("</section>")
    return "\n".join(parts) + "\n"
