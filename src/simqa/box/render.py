"""Lay a box out as a "Similar Q&A" section, with the page's "Related FAQ" after it: plain
text like the reference page, JSON, Markdown or HTML. The one renderer of the box: the CLI,
the API's ``format=html`` fragment, ``similar --all``'s files and the server's pages use it.

Record text comes from scraped sites and users, so it is made safe on the way out: control
characters (terminal escape sequences, bidi overrides) never reach text, Markdown or HTML,
and only http(s) URLs become links.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from simqa.box.box import Box
from simqa.box.related import Topic
from simqa.errors import SimqaError
from simqa.index import Hit
from simqa.records import Consultation, normalise

FORMATS = ("text", "json", "markdown", "html")
HEADING = "Similar Q&A"
RELATED_HEADING = "Related FAQ"
QUESTION_CHARS = 270
REPLY_CHARS = 270
NO_REPLY = "(reply not available)"

# C0 and C1 controls (ESC starts terminal sequences) and the bidi embedding, override and
# isolate marks, which reorder what a reader sees
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SENTENCE_END = re.compile(r"[.?!。？！]+(?=\s|$)")
_NOT_WORD = re.compile(r"\W+")


def plain(text: str) -> str:
    """One line of text with whitespace collapsed and control characters removed."""
    return _CONTROL.sub("", normalise(text))


def safe_url(url: str) -> str:
    """``url`` if it may become a link (http or https with a host), else ""."""
    url = plain(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


def excerpt(text: str, limit: int) -> str:
    """The start of ``text``, cut at a word boundary with "..." when it is longer than ``limit``."""
    text = plain(text)
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else text[:limit]
    return cut.rstrip(" ,;:-") + "..."


def title_of(record: Consultation) -> str:
    return plain(record.title) or excerpt(record.question, 80)


def question_after_title(title: str, question: str) -> str:
    """The question without the opening sentence(s) that merely repeat the title ("" when it
    says nothing else): many sites' question text starts with, or is, the title again."""
    title_key, question = _key(title), plain(question)
    if not title_key:
        return question
    ends = [m.end() for m in _SENTENCE_END.finditer(question)] + [len(question)]
    for end in ends:
        head = _key(question[:end])
        if head == title_key:
            return question[end:].lstrip()
        if not title_key.startswith(head):
            break
    return question


def _key(text: str) -> str:
    return _NOT_WORD.sub("", text.casefold())


def question_excerpt(record: Consultation) -> str:
    """What the box shows under the title ("" when the question only repeats it)."""
    return excerpt(question_after_title(title_of(record), record.question), QUESTION_CHARS)


def byline(record: Consultation) -> str:
    """ "Dr. NAME reply DEPARTMENT", or the closest thing the record knows."""
    doctor = plain(record.doctor)
    department = plain(record.department)
    if doctor:
        name = doctor if doctor.lower().startswith("dr") else f"Dr. {doctor}"
        return f"{name} reply {department}".strip()
    if department:
        return f"Reply from {department}"
    source = plain(record.source)
    return f"Reply from {source}" if source else "Reply"


def nothing_found(min_score: float | None) -> str:
    if min_score is None or min_score <= -1:
        return "Nothing similar was found."
    return f"Nothing similar was found (no consultation scored {min_score:.2f} or more)."


def box_json(hits: Sequence[Hit], related: Sequence[Topic] = ()) -> dict[str, Any]:
    """The JSON object of a box: ``{"hits": [...], "related_faq": [{topic, department}]}``."""
    return {"hits": [h.to_json() for h in hits], "related_faq": [t.to_json() for t in related]}


def render(
    box: Box | Sequence[Hit],
    format: str = "text",
    *,
    min_score: float | None = None,
    related: Sequence[Topic] = (),
    link: Callable[[Consultation], str] | None = None,
) -> str:
    """A box (or bare hits, with ``related`` topics if any) as a section in ``format``.

    ``min_score`` is the threshold named when nothing was found (a box carries its own);
    ``link`` gives a hit's address in HTML and Markdown (default: the record's own http(s)
    URL, or none), e.g. a site's page for the consultation."""
    if isinstance(box, Box):
        hits, related = box.hits, box.related
        min_score = box.min_score if min_score is None else min_score
        data = box.to_json()
    else:
        hits = list(box)
        data = box_json(hits, related)
    address = link or (lambda record: safe_url(record.url))
    if format == "json":
        return json.dumps(data, ensure_ascii=False, indent=2)
    if format == "text":
        return _text(hits, min_score, related)
    if format == "markdown":
        return _markdown(hits, min_score, related, address)
    if format == "html":
        return _html(hits, min_score, related, address)
    raise SimqaError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")


def _text(hits: Sequence[Hit], min_score: float | None, related: Sequence[Topic]) -> str:
    lines = [HEADING]
    if not hits:
        lines.append(nothing_found(min_score))
    for hit in hits:
        r = hit.record
        title = title_of(r)
        question = question_excerpt(r)
        reply = excerpt(r.reply, REPLY_CHARS) or NO_REPLY
        lines += [
            title,
            *([question] if question else []),
            byline(r),
            f"{reply}[Read More] {title}",
        ]
    if related:
        lines += [RELATED_HEADING, *(plain(t.label()) for t in related)]
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_[]<>#|" else c for c in text)


def _md_url(url: str) -> str:
    """A link destination that cannot end the link early: spaces, ``<>()`` percent-encoded."""
    return quote(url, safe=":/?#[]@!$&'*+,;=%~")


def _markdown(
    hits: Sequence[Hit],
    min_score: float | None,
    related: Sequence[Topic],
    address: Callable[[Consultation], str],
) -> str:
    esc = _md_escape
    parts = [f"## {HEADING}", ""]
    if not hits:
        parts += [nothing_found(min_score), ""]
    for hit in hits:
        r = hit.record
        url = _md_url(address(r))
        title = esc(title_of(r))
        question = question_excerpt(r)
        parts += [f"### [{title}]({url})" if url else f"### {title}", ""]
        if question:
            parts += [f"> {esc(question)}", ""]
        reply = esc(excerpt(r.reply, REPLY_CHARS)) or NO_REPLY
        more = f" [Read More]({url})" if url else ""
        parts += [f"**{esc(byline(r))}**", "", f"{reply}{more}", ""]
    if related:
        parts += [f"## {RELATED_HEADING}", "", *(f"- {esc(plain(t.label()))}" for t in related)]
    return "\n".join(parts).rstrip() + "\n"


def _html(
    hits: Sequence[Hit],
    min_score: float | None,
    related: Sequence[Topic],
    address: Callable[[Consultation], str],
) -> str:
    def e(text: str) -> str:
        return html.escape(plain(text))

    parts = [f'<section class="similar-qa">\n<h2>{e(HEADING)}</h2>']
    if not hits:
        parts.append(f'<p class="none">{e(nothing_found(min_score))}</p>')
    for hit in hits:
        r = hit.record
        url = address(r)
        title = e(title_of(r))
        link = f'<a href="{e(url)}">{title}</a>' if url else title
        more = f' <a class="more" href="{e(url)}">[Read More] {title}</a>' if url else ""
        question = question_excerpt(r)
        reply = e(excerpt(r.reply, REPLY_CHARS)) or e(NO_REPLY)
        parts.append(
            f'<article data-id="{e(r.id)}" data-score="{hit.score:.4f}">\n'
            f"<h3>{link}</h3>\n"
            + (f'<p class="question">{e(question)}</p>\n' if question else "")
            + f'<p class="byline">{e(byline(r))}</p>\n'
            f'<p class="reply">{reply}{more}</p>\n'
            "</article>"
        )
    parts.append("</section>")
    if related:
        items = "\n".join(
            f'<li><span class="topic">{e(t.topic)}</span>'
            + (f'<span class="department">({e(t.department)})</span>' if t.department else "")
            + "</li>"
            for t in related
        )
        parts.append(
            f'<section class="related-faq">\n<h2>{e(RELATED_HEADING)}</h2>\n<ul>\n{items}\n</ul>\n'
            "</section>"
        )
    return "\n".join(parts) + "\n"
