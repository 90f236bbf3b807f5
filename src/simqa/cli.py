"""The ``simqa`` command: a thin layer over the library, one short function per command."""

from __future__ import annotations

import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from simqa.errors import SimqaError, UnknownConsultation
from simqa.evaluate.cli_command import eval_command
from simqa.tune_cli import tune_command

app = typer.Typer(
    help="Similar-question retrieval for medical consultations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

IndexOpt = Annotated[
    str, typer.Option("--index", "-i", help="Index name (a folder under ./indexes) or path.")
]
KOpt = Annotated[int, typer.Option("-k", "--top", help="How many similar consultations.")]
FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="Output: text (Similar Q&A), json, markdown or html.")
]
DeptOpt = Annotated[str | None, typer.Option(help="Only consultations of this department.")]
SourceOpt = Annotated[str | None, typer.Option(help="Only consultations from this source.")]
TagOpt = Annotated[str | None, typer.Option(help="Only consultations with this topic tag.")]
SinceOpt = Annotated[
    str | None, typer.Option(help="Only consultations asked on or after this date (2013-02-10).")
]
UntilOpt = Annotated[
    str | None, typer.Option(help="Only consultations asked on or before this date.")
]
WaitOpt = Annotated[
    float,
    typer.Option(help="Seconds to wait for another writer of the same index before giving up."),
]
EncoderOpt = Annotated[
    str | None,
    typer.Option(
        "--encoder", help="onnx (int8, faster) or torch; default: what the index was built with."
    ),
]
VerifyOpt = Annotated[
    str,
    typer.Option(
        "--verify",
        help="flag: mark each hit same_question true/false with a probability (JSON); drop: "
        "leave out hits judged a different question; off. Needs a verifier for the index's "
        "model (simqa adapt fits one).",
    ),
]
MinScoreOpt = Annotated[
    float | None,
    typer.Option(
        help="Leave out hits below this cosine similarity (default: the index's calibrated "
        "threshold, see simqa info; -1 keeps every hit)."
    ),
]


@app.callback()
def _options(
    threads: Annotated[
        int | None, typer.Option(help="Threads for the model and the index (default: all cores).")
    ] = None,
) -> None:
    """Similar-question retrieval for medical consultations."""
    if threads is not None:
        if threads < 1:
            raise typer.BadParameter("must be 1 or more", param_hint="--threads")
        os.environ["SIMQA_THREADS"] = str(threads)


def _echo(text: str) -> None:
    typer.echo(text)


@app.command()
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
            "this times their mean cosine to their 10 nearest neighbours (default 0.5; 0: off)."
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
    from simqa.index import index_path
    from simqa.index.search import remote_backend
    from simqa.ingest import IngestReport

    report = IngestReport()
    started = time.perf_counter()
    if milvus is not None or remote_backend(index_path(index)) is not None:
        from simqa.milvus.command import build_or_append as build_index  # in Milvus

        build_index = partial(build_index, uri=milvus)
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


@app.command()
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
    from simqa.index import Index, check_k
    from simqa.related import NEIGHBOURS, related_faq
    from simqa.render import render
    from simqa.verify import verifier_for, verify_hits

    if (text is None) == (file is None):
        raise SimqaError("give either a query TEXT or --file QUERIES")
    idx = Index.open(index, encoder=encoder)
    verifier = verifier_for(idx, verify)
    filters = {"department": department, "source": source, "tag": tag, "since": since,
               "until": until, "min_score": min_score}  # fmt: skip
    if file is None:
        hits = idx.search(text, max(check_k(k), NEIGHBOURS), **filters)  # Related FAQ pools more
        _echo(render(verify_hits(hits[:k], verifier, verify), format,
                     min_score=idx.min_score(min_score),
                     related=related_faq(None, hits, idx.tag_counts())))  # fmt: skip
        return
    lines = _read_lines(file)
    for start in range(0, len(lines), 256):
        batch = lines[start : start + 256]
        for line, hits in zip(batch, idx.search_many(batch, k, **filters), strict=True):
            shown = verify_hits(hits, verifier, verify)
            _echo(
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


@app.command()
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
    from simqa.index import Index, check_k
    from simqa.ingest import load
    from simqa.related import NEIGHBOURS, related_faq
    from simqa.render import render

    if [record_id is not None, page is not None, every].count(True) != 1:
        raise SimqaError("give one of: a consultation ID, --page FILE or --all")
    if out is not None and not every:
        raise SimqaError("--out goes with --all")
    idx = Index.open(index, encoder=encoder)
    filters = {"department": department, "source": source, "tag": tag, "since": since,
               "until": until, "min_score": min_score}  # fmt: skip
    if every:
        from simqa.boxes import write_boxes

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
    from simqa.verify import verifier_for, verify_hits

    shown = verify_hits(hits[:k], verifier_for(idx, verify), verify)
    _echo(render(shown, format, min_score=idx.min_score(min_score),
                 related=related_faq(own, hits, idx.tag_counts())))  # fmt: skip


@app.command()
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
    from simqa.duplicates import find_duplicates
    from simqa.duplicates import render as render_duplicates
    from simqa.index import Index

    found = find_duplicates(Index.open(index), min_score)
    _echo(render_duplicates(found, format, groups=groups))


@app.command()
def info(
    index: IndexOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    verify: Annotated[
        bool, typer.Option(help="Check every file's checksum (reads the whole index).")
    ] = False,
) -> None:
    """Show what an index holds and how it was built."""
    from simqa.adapt import model_card
    from simqa.index import Index

    opened = Index.open(index, verify=verify)
    details = opened.info()
    card = model_card(opened.root, opened.manifest.model) if hasattr(opened, "root") else None
    if card:
        details["adapted"] = card
    if verify:
        details["verified"] = "every file matches its checksum"
    if as_json:
        _echo(json.dumps(details, indent=2))
        return
    for key, value in details.items():
        if key == "size_bytes":
            value = f"{value / 1e6:.1f} MB"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        _echo(f"{key.replace('_', ' ') + ':':<16} {value}")


@app.command()
def delete(
    ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Consultation ids to remove.")],
    index: IndexOpt = "default",
    wait: WaitOpt = 300.0,
) -> None:
    """Take consultations down: records and vectors leave in one atomic write."""
    from simqa.index import Index

    idx = Index.open(index)
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


@app.command()
def calibrate(
    pairs: Annotated[Path, typer.Argument(help="Labelled validation pairs (never an eval set).")],
    model: Annotated[
        str | None, typer.Option(help="Embedding model (default all-MiniLM-L6-v2).")
    ] = None,
    check: Annotated[
        list[Path] | None, typer.Option(help="Also report the threshold's accuracy on these pairs.")
    ] = None,
) -> None:
    """Measure the min-score threshold on labelled pairs; prints JSON (use it with build)."""
    from simqa.evaluate.calibrate import accuracy_at
    from simqa.evaluate.calibrate import calibrate as calibrate_pairs

    result = calibrate_pairs(pairs, model)
    result["transfer_accuracy"] = {
        str(other): round(accuracy_at(other, result["min_score"], model), 4)
        for other in check or []
    }
    _echo(json.dumps(result, indent=2))


@app.command()
def serve(
    index: IndexOpt = "default",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes, one index each.")] = 1,
    write_token: Annotated[
        str | None,
        typer.Option(
            envvar="SIMQA_WRITE_TOKEN",
            help="Accept writes with Authorization: Bearer TOKEN (off without one).",
        ),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
) -> None:
    """Serve the Similar Q&A box over HTTP (API at /v1, docs at /docs) and a page at /."""
    from simqa.serve import serve as run_server

    run_server(
        index, host=host, port=port, workers=workers, write_token=write_token,
        access_log=access_log,
    )


@app.command()
def adapt(
    index: IndexOpt = "default",
    pairs: Annotated[
        list[Path] | None,
        typer.Option("--pairs", help="Labelled pairs to train on (default: the packaged "
                     "MEDIQA/AMIA 2016 RQE training pairs); repeatable."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling, mining and training.")] = 0,
    max_pairs: Annotated[int, typer.Option(help="Pairs to train on (a seeded sample).")] = 1280,
    epochs: Annotated[float, typer.Option(help="Passes over the training pairs.")] = 1.0,
    hub_penalty: Annotated[
        float | None, typer.Option(help="Hub penalty weight of the new version (default: keep).")
    ] = None,
    wait: WaitOpt = 300.0,
) -> None:
    """Fine-tune the index's encoder for this index on the CPU, re-embed it, publish it."""
    from simqa.adapt import adapt as adapt_index

    def log(message: str) -> None:
        typer.echo(message, err=True)

    record = adapt_index(
        index, pairs, seed=seed, max_pairs=max_pairs, epochs=epochs, hub_penalty=hub_penalty,
        wait=wait, progress=sys.stderr.isatty(), log=log,
    )  # fmt: skip
    _echo(json.dumps(record, indent=2))


app.command("eval")(eval_command)
app.command("tune")(tune_command)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 1."""
    try:
        app()
    except SimqaError as exc:
        typer.echo(f"simqa: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("simqa: interrupted; the index is unchanged", err=True)
        sys.exit(130)
