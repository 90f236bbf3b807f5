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
    from simqa.box.related import NEIGHBOURS, related_faq
    from simqa.box.render import render
    from simqa.box.verify import verifier_for, verify_hits
    from simqa.index import Index, check_k

    if (text is None) == (file is None):
        raise SimqaError("give either a query TEXT or --file QUERIES")
    idx = Index.open(index, encoder=encoder)
    verifier = verifier_for(idx, verify)
    filters = {"department": department, "source": source, "tag": tag, "since": since,
               "until": until, "min_score": min_score}  # fmt: skip
    if file is None:
        hits = idx.search(text, max(check_k(k), NEIGHBOURS), **filters)  # Related FAQ pools more
        echo(render(verify_hits(hits[:k], verifier, verify), format,
                     min_score=idx.min_score(min_score),
                     related=related_faq(None, hits, idx.tag_counts())))  # fmt: skip
        return
    lines = _read_lines(file)
    for start in range(0, len(lines), 256):
        batch = lines[start : start + 256]
        for line, hits in zip(batch, idx.search_many(batch, k, **filters), strict=True):
            shown = verify_hits(hits, verifier, verify)
            echo(
                json.dumps({"query": line, "hits": [h.to_json() for h in shown]},
                           ensure_ascii=False)
            )


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
    from simqa.box.related import NEIGHBOURS, related_faq
    from simqa.box.render import render
    from simqa.index import Index, check_k
    from simqa.ingest import load

    if [record_id is not None, page is not None, every].count(True) != 1:
        raise SimqaError("give one of: a consultation ID, --page FILE or --all")
    if out is not None and not every:
        raise SimqaError("--out goes with --all")
    idx = Index.open(index, encoder=encoder)
    filters = {"department": department, "source": source, "tag": tag, "since": since,
               "until": until, "min_score": min_score}  # fmt: skip
    if every:
        from simqa.box.all_boxes import write_boxes

        write_boxes(idx, k, format=format, out=out, verify=verify,
                    progress=sys.stderr.isatty(), **filters)  # fmt: skip
        return
    if page is not None:
        records = list(load([page], format="page", strict=True))
        if not records:
            raise SimqaError(f"{page} holds no consultation page")
        own = records[0]
        hits = idx.similar_to(own, max(check_k(k), NEIGHBOURS), **filters)  # FAQ pools more
    else:
        own = idx.get(record_id)
        hits = idx.similar(record_id, max(check_k(k), NEIGHBOURS), **filters)
    from simqa.box.verify import verifier_for, verify_hits

    shown = verify_hits(hits[:k], verifier_for(idx, verify), verify)
    echo(render(shown, format, min_score=idx.min_score(min_score),
                 related=related_faq(own, hits, idx.tag_counts())))  # fmt: skip


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
    from simqa.index import Index

    found = find_duplicates(Index.open(index), min_score)
    echo(render_duplicates(found, format, groups=groups))

