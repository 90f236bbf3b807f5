"""``simqa query``, ``similar`` and ``duplicates``: the box, from a question, an id or a page."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from simqa.cli.options import (
    DeptOpt,
    EncoderOpt,
    FormatOpt,
    IndexOpt,
    KOpt,
    MinScoreOpt,
    SinceOpt,
    SourceOpt,
    TagOpt,
    UntilOpt,
    VerifyOpt,
    echo,
)  # fmt: skip
from simqa.errors import SimqaError


def query(
    text: Annotated[
        str | None, typer.Argument(help="The question to find similar ones for.")
    ] = None,
    index: IndexOpt = "default",
    k: KOpt = 5,
    format: FormatOpt = "text",
    department: DeptOpt = None,
    source: SourceOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    min_score: MinScoreOpt = None,
    encoder: EncoderOpt = None,
    verify: VerifyOpt = "flag",
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="One query per line ('-' for stdin); prints one JSON line each."
        ),
    ] = None,
) -> None:
    """Find the consultations most similar to a free-text question."""
    from simqa.box.box import Box
    from simqa.box.render import render
    from simqa.index import open_index

    if (text is None) == (file is None):
        raise SimqaError("give either a query TEXT or --file QUERIES")
    idx = open_index(index, encoder=encoder)
    filters = {"department": department, "source": source, "tag": tag, "since": since,
               "until": until, "min_score": min_score}  # fmt: skip
    if file is None:
        echo(render(Box.for_question(idx, text, k, verify=verify, **filters), format))
        return
    lines = _read_lines(file)
    for start in range(0, len(lines), 256):
        batch = lines[start : start + 256]
        for box in Box.for_questions(idx, batch, k, verify=verify, **filters):
            echo(json.dumps(box.to_json(), ensure_ascii=False))


def _read_lines(file: Path) -> list[str]:
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SimqaError(f"query file {file} does not exist") from None
    except UnicodeDecodeError as exc:
        raise SimqaError(f"query file {file} is not UTF-8 (byte {exc.start})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise SimqaError(f"query file {file} has no queries")
    return lines


def similar(
    record_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="An indexed consultation's id.")
    ] = None,
    page: Annotated[
        Path | None, typer.Option(help="A consultation page file (need not be indexed).")
    ] = None,
    index: IndexOpt = "default",
    k: KOpt = 5,
    format: FormatOpt = "text",
    department: DeptOpt = None,
    source: SourceOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    min_score: MinScoreOpt = None,
    encoder: EncoderOpt = None,
    verify: VerifyOpt = "flag",
    every: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every consultation's box: one JSON line each to --out FILE (or "
            "stdout); with --format html or markdown, one fragment file each in --out DIR.",
        ),
    ] = False,
    out: Annotated[Path | None, typer.Option(help="With --all: where to write.")] = None,
) -> None:
    """Find the consultations most similar to an indexed one, or to a page file."""
    from simqa.box.box import Box
    from simqa.box.render import render
    from simqa.index import open_index

    if [record_id is not None, page is not None, every].count(True) != 1:
        raise SimqaError("give one of: a consultation ID, --page FILE or --all")
    if out is not None and not every:
        raise SimqaError("--out goes with --all")
    idx = open_index(index, encoder=encoder)
    filters = {"department": department, "source": source, "tag": tag, "since": since,
               "until": until, "min_score": min_score}  # fmt: skip
    if every:
        from simqa.box.all_boxes import write_boxes

        write_boxes(idx, k, format=format, out=out, verify=verify,
                    progress=sys.stderr.isatty(), **filters)  # fmt: skip
        return
    if page is not None:
        box = Box.for_page(idx, page, k, verify=verify, **filters)
    else:
        box = Box.for_id(idx, record_id, k, verify=verify, **filters)
    echo(render(box, format))


def duplicates(
    index: IndexOpt = "default",
    min_score: Annotated[
        float, typer.Option(help="Cosine at or above which two questions are duplicates.")
    ] = 0.95,
    format: Annotated[str, typer.Option("--format", "-f", help="text, json or csv.")] = "text",
    groups: Annotated[
        bool, typer.Option("--groups", help="List groups of duplicates instead of pairs.")
    ] = False,
) -> None:
    """List pairs (or groups) of consultations whose questions are near-identical."""
    from simqa.box.duplicates import find_duplicates
    from simqa.box.duplicates import render as render_duplicates
    from simqa.index import open_index

    found = find_duplicates(open_index(index), min_score)
    echo(render_duplicates(found, format, groups=groups))

