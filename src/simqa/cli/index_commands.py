"""``simqa build``, ``delete``, ``compact`` and ``info``: writing an index and saying what it
holds."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from simqa.cli.options import IndexOpt, WaitOpt, echo
from simqa.errors import SimqaError, UnknownConsultation


def build(
    sources: Annotated[list[Path], typer.Argument(help="Files or folders of consultations.")],
    index: IndexOpt = "default",
    append: Annotated[
        bool, typer.Option(help="Add to an existing index instead of replacing it.")
    ] = False,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", help="Force the input format: page, jsonl, csv, medquad, lasseregin, covid."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="sentence-transformers model name or path.")
    ] = None,
    index_type: Annotated[
        str | None, typer.Option(help="Override the chosen vector index type.")
    ] = None,
    recall: Annotated[
        float | None,
        typer.Option(help="recall@10 target for approximate index types (default 0.95)."),
    ] = None,
    fields: Annotated[
        str | None,
        typer.Option(help="What to embed: title+question (default), question or title."),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first malformed record.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    encoder: Annotated[
        str | None,
        typer.Option(help="auto (default: int8 onnx where the model allows it), onnx or torch."),
    ] = None,
    min_score: Annotated[
        str,
        typer.Option(
            help="Default threshold under which queries answer that nothing similar is known: "
            "auto (calibrated for the model, if known), none, or a cosine."
        ),
    ] = "auto",
    hub_penalty: Annotated[
        float | None,
        typer.Option(
            help="Rank down questions in crowded parts of the index: order by cosine minus "
            "this times their mean cosine to their 10 nearest neighbours (default 0: off)."
        ),
    ] = None,
    wait: WaitOpt = 300.0,
    milvus: Annotated[
        str | None,
        typer.Option(
            help="Keep records and vectors in Milvus: http://host:19530, or a Milvus Lite "
            "file ./NAME.db; the index folder keeps only the manifest."
        ),
    ] = None,
) -> None:
    """Ingest consultations, embed their questions and write the index atomically.

    With --append, add and update consultations of an existing index; options fixed when
    it was built (--model, --fields, --index-type, --encoder, --recall) are refused.
    """
    from simqa.index import build as build_index
    from simqa.ingest import IngestReport

    report = IngestReport()
    started = time.perf_counter()
    try:
        idx = build_index(
            sources,
            index,
            model=model,
            index_type=index_type,
            append=append,
            recall=recall,
            fields=fields,
            format=format,
            strict=strict,
            report=report,
            progress=not quiet,
            encoder=encoder,
            min_score=_threshold(min_score),
            hub_penalty=hub_penalty,
            wait=wait,
            milvus=milvus,
        )
    finally:
        for problem in report.problems:
            kind = "skipped" if problem.skipped else "warning"
            typer.echo(f"{kind}: {problem}", err=True)
    info = idx.info()
    typer.echo(report.summary(), err=True)
    typer.echo(
        f"index {info['path']}: {info['records']:,} consultations, {info['index_type']} index, "
        f"{info['size_bytes'] / 1e6:.1f} MB, built in {time.perf_counter() - started:.1f}s",
        err=True,
    )


def _threshold(value: str) -> float | str | None:
    if value in ("auto", "none"):
        return None if value == "none" else value
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter("auto, none or a number", param_hint="--min-score") from None


def info(
    index: IndexOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    verify: Annotated[
        bool, typer.Option(help="Check every file's checksum (reads the whole index).")
    ] = False,
) -> None:
    """Show what an index holds and how it was built."""
    from simqa.index import open_index
    from simqa.learn.adapt import model_card

    opened = open_index(index, verify=verify)
    details = opened.info()
    card = model_card(opened.root, opened.manifest.model)
    if card:
        details["adapted"] = card
    if verify:
        details["verified"] = "every file matches its checksum"
    if as_json:
        echo(json.dumps(details, indent=2))
        return
    for key, value in details.items():
        if key == "size_bytes":
            value = f"{value / 1e6:.1f} MB"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        echo(f"{key.replace('_', ' ') + ':':<16} {value}")


def delete(
    ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Consultation ids to remove.")],
    index: IndexOpt = "default",
    wait: WaitOpt = 300.0,
) -> None:
    """Take consultations down: records and vectors leave in one atomic write."""
    from simqa.index import open_index

    idx = open_index(index)
    unknown = [i for i in dict.fromkeys(ids) if not _holds(idx, i)]
    if len(unknown) == len(set(ids)):
        raise SimqaError(f"no consultation with id {', '.join(map(repr, unknown))} in {index}")
    for record_id in unknown:
        typer.echo(f"warning: no consultation with id {record_id!r}; nothing to delete", err=True)
    removed = idx.delete(ids, wait=wait)
    typer.echo(f"deleted {removed:,} consultation(s); {len(idx):,} remain", err=True)


def _holds(idx: Any, record_id: str) -> bool:
    try:
        idx.get(record_id)
    except UnknownConsultation:
        return False
    return True



def compact(
    index: IndexOpt = "default",
    if_due: Annotated[
        bool,
        typer.Option(
            "--if-due",
            help="Only when the deltas pass the thresholds (as a server's writer does); "
            "otherwise whenever there are any.",
        ),
    ] = False,
    wait: WaitOpt = 300.0,
) -> None:
    """Fold the delta segments of recent writes into a new base. Writers go on meanwhile:
    what they publish during the compaction is kept on top of the new base."""
    from simqa.index.compact import compact as compact_index

    done = compact_index(index, force=not if_due, wait=wait)
    if not done["compacted"]:
        typer.echo(f"nothing done: {done['reason']} ({done.get('version', '-')})", err=True)
        return
    replayed = done["replayed_segments"]
    typer.echo(
        f"{done['version']}: {done['kind']} compaction, {done['folded_records']:,} delta "
        f"record(s) and {done['folded_deletes']:,} deletion(s) folded "
        + (f"into a base of {done['base_records']:,} " if done["kind"] == "major" else "")
        + f"in {done['seconds']:.1f}s"
        + (f"; {replayed} write(s) published meanwhile kept" if replayed else ""),
        err=True,
    )
