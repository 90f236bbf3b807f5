"""Every consultation's box at once, as a site computes them when its corpus changes.

``simqa similar --all`` writes one JSON line per consultation (its Similar Q&A hits and its
Related FAQ), or with ``--format html|markdown --out DIR`` one embeddable fragment file per
consultation. Each box is ``Box.for_id`` of its consultation; they come from the index's
``similar_all``: the stored vectors, searched in batches, never re-encoded.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from hashlib import sha1
from pathlib import Path
from typing import IO, Unpack
from urllib.parse import quote

from simqa.box.box import Box
from simqa.box.related import NEIGHBOURS, rank_topics, topics_of
from simqa.box.render import render
from simqa.box.verify import verifier_for, verify_hits
from simqa.errors import SimqaError
from simqa.index import Filters, Hit, check_k
from simqa.index.protocol import SimilarIndex

#: --all with these formats writes one file per consultation into a folder
FRAGMENT_FORMATS = {"html": ".html", "markdown": ".md"}
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")


def all_boxes(
    index: SimilarIndex,
    k: int = 4,
    *,
    verify: str = "flag",
    batch_size: int = 256,
    **filters: Unpack[Filters],
) -> Iterator[Box]:
    """Every consultation's box, in the index's order: each equals ``Box.for_id`` of its id,
    from the stored vectors searched in batches (nothing is encoded, and a neighbour's tags
    are parsed once per run, not once per box it appears in)."""
    wide = max(check_k(k), NEIGHBOURS)
    verifier = verifier_for(index, verify)
    own = {record.id: topics_of(record) for record in index.records()}
    counts = index.tag_counts()
    threshold = index.min_score(filters.get("min_score"))

    def topics(hit: Hit) -> list[tuple[str, str]]:
        # a record is a neighbour of ~NEIGHBOURS others: its tags are parsed once, not per box
        found = own.get(hit.id)
        return topics_of(hit.record) if found is None else found

    for record_id, hits in index.similar_all(wide, batch_size=batch_size, **filters):
        neighbours = [(topics(h), h.score) for h in hits]
        yield Box(
            verify_hits(hits[:k], verifier, verify),
            rank_topics(own.get(record_id, []), neighbours, counts),
            id=record_id,
            min_score=threshold,
        )


def fragment_name(record_id: str, suffix: str) -> str:
    """A file name for a consultation's fragment: the id itself when it is a plain name,
    else percent-encoded (never hidden, never a path; overlong ids end in a hash)."""
    if _PLAIN_NAME.fullmatch(record_id):
        return record_id + suffix
    name = quote(record_id, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > 150:
        name = name[:120] + "~" + sha1(record_id.encode("utf-8")).hexdigest()[:16]
    return name + suffix


def write_boxes(
    index: SimilarIndex,
    k: int = 4,
    *,
    format: str = "json",
    out: Path | None = None,
    verify: str = "flag",
    progress: bool = False,
    **filters: Unpack[Filters],
) -> int:
    """Write every box: JSON lines to ``out`` (stdout when None), or with an html/markdown
    ``format`` one fragment per consultation into the folder ``out``. Returns the count."""
    boxes = all_boxes(index, k, verify=verify, **filters)
    if progress:
        from tqdm.auto import tqdm

        boxes = tqdm(boxes, total=len(index), unit="box", file=sys.stderr)
    if format in FRAGMENT_FORMATS:
        if out is None:
            raise SimqaError(
                f"--all --format {format} writes one file per consultation: "
                "give a folder with --out DIR"
            )
        return _write_fragments(boxes, format, out)
    if format not in ("json", "text"):
        raise SimqaError(f"--all writes JSON lines, or html/markdown files: not {format!r}")
    if out is None:
        return _write_lines(boxes, sys.stdout)
    if out.is_dir():
        raise SimqaError(f"--out {out} is a folder; JSON lines go to a file")
    partial = out.with_name(f".{out.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            count = _write_lines(boxes, handle)
        os.replace(partial, out)  # a complete file or none
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise SimqaError(f"cannot write {out}: {err.strerror or err}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


def _write_lines(boxes: Iterator[Box], handle: IO[str]) -> int:
    count = 0
    for box in boxes:
        handle.write(json.dumps(box.to_json(), ensure_ascii=False) + "\n")
        count += 1
    return count


def _write_fragments(boxes: Iterator[Box], format: str, folder: Path) -> int:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SimqaError(f"cannot create folder {folder}: {err.strerror or err}") from None
    count = 0
    for box in boxes:
        text = render(box, format)
        (folder / fragment_name(box.id, FRAGMENT_FORMATS[format])).write_text(
            text, encoding="utf-8"
        )
        count += 1
    return count
