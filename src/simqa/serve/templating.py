"""The page templates (package data) and the helpers they lay a consultation out with: the
same bylines and titles as ``simqa.box.render``, which lays out every page's box itself."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from fastapi.templating import Jinja2Templates

from simqa.box.render import NO_REPLY, byline, title_of
from simqa.records import Consultation, Reply, normalise

TEMPLATES = Path(__file__).parent / "templates"


def asker_line(record: Consultation) -> str:
    """ "30~39 year old female. Ask Date: 2013/02/10", with what the record knows."""
    age, sex = normalise(record.asker_age), normalise(record.asker_sex)
    who = " ".join(part for part in (f"{age} year old" if age else "", sex) if part)
    date = f"Ask Date: {normalise(record.ask_date)}" if normalise(record.ask_date) else ""
    return ". ".join(part for part in (who, date) if part)


def reply_byline(reply: Reply) -> str:
    doctor = normalise(reply.doctor)
    name = doctor if not doctor or doctor.lower().startswith("dr") else f"Dr. {doctor}"
    return f"{name} reply {normalise(reply.department)}".strip() if name else "Another reply"


def web_link(url: str) -> bool:
    """Only http(s) addresses become links: a record's ``javascript:`` URL stays text."""
    return urlsplit(url or "").scheme.lower() in ("http", "https")


def page_templates() -> Jinja2Templates:
    """Jinja templates with autoescaping on for every file, whatever its name."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        title_of=title_of,
        byline=byline,
        NO_REPLY=NO_REPLY,
        asker_line=asker_line,
        reply_byline=reply_byline,
        web_link=web_link,
    )
    return Jinja2Templates(env=env)
