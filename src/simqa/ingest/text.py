"""File reading and text tidying shared by the loaders.

Reading goes through here so that a missing or non-UTF-8 file always becomes one short
``SimqaError`` naming the file (and, for bad bytes, the line and byte offset).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from simqa.errors import SimqaError
from simqa.records import normalise

_BLANKS = re.compile(r"\n{3,}")
_AGE_SEX = re.compile(  # first person only: "my 5 year old girl" is not the asker
    r"\b(?:I\s*am|I'm|Im)\s+(?:an?\s+)?(\d{1,3})[\s-]*(?:years?|yrs?)[\s-]*old[\s,]+"
    r"(?:[a-z]+\s+)?(male|female|man|woman|boy|girl|lady|guy)\b",
    re.IGNORECASE,
)
_SEX = {"man": "male", "boy": "male", "guy": "male", "woman": "female", "girl": "female",
        "lady": "female"}


def _open_error(path: Path, err: OSError) -> SimqaError:
    if isinstance(err, FileNotFoundError):
        return SimqaError(f"{path}: no such file")
    if isinstance(err, IsADirectoryError):
        return SimqaError(f"{path}: is a directory, expected a file")
    return SimqaError(f"{path}: cannot read ({err.strerror or err})")


def _decode_error(path: Path, data: bytes, err: UnicodeDecodeError, offset: int = 0) -> SimqaError:
    line = data[: err.start].count(b"\n") + 1
    return SimqaError(
        f"{path}: not UTF-8 text (bad byte 0x{data[err.start]:02x} at line {line}, "
        f"byte offset {offset + err.start})"
    )


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise _open_error(path, err) from None


def decode(path: Path, data: bytes) -> str:
    """UTF-8 (a leading BOM is dropped, as spreadsheet exports add one)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _decode_error(path, data, err) from None


def read_text(path: Path) -> str:
    """The whole file as text with ``\\n`` line ends (lone ``\\r`` inside a line stays)."""
    return decode(path, read_bytes(path)).replace("\r\n", "\n")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line with its end) of a file, decoded lazily so huge files stream."""
    try:
        handle = path.open("rb")
    except OSError as err:
        raise _open_error(path, err) from None
    with handle:
        offset = 0
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start]
                raise SimqaError(
                    f"{path}: not UTF-8 text (bad byte 0x{bad:02x} at line {number}, "
                    f"byte offset {offset + err.start})"
                ) from None
            offset += len(raw)
            yield number, text


def tidy(text: str | None) -> str:
    """Strip scraping junk (tabs, CRs, no-break spaces, blank runs) but keep line breaks."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    lines = [" ".join(line.split()) for line in text.split("\n")]  # 3x faster than a regex
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def one_line(text: str | None) -> str:
    """Collapse all whitespace: for titles, names and tags."""
    return " ".join((text or "").split())


def demographics(text: str) -> tuple[str, str]:
    """(age, sex) when the asker states them early on, as in "I am a 24 year old female"."""
    match = _AGE_SEX.search(text[:400])
    if not match:
        return "", ""
    sex = match.group(2).lower()
    return match.group(1), _SEX.get(sex, sex)


def stable_id(prefix: str, *parts: str) -> str:
    """``prefix-<16 hex>`` from the normalised parts: the same text always gets the same id."""
    key = "\n".join(normalise(p).lower() for p in parts)
    return f"{prefix}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}"


def url_slug(url: str, max_len: int = 60) -> str:
    """A readable id part from a URL's last path segment; long ones end in a short hash."""
    last = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    last = re.sub(r"\.html?$", "", last, flags=re.IGNORECASE)
    slug = re.sub(r"[^a-z0-9]+", "-", last.lower()).strip("-")
    if len(slug) > max_len or not slug:
        digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:8]
        slug = f"{slug[: max_len - 10].rstrip('-')}-{digest}".lstrip("-")
    return slug
