"""``simqa eval``: the command-line face of ``simqa.evaluate.compare.evaluate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

#: column headings on the terminal; JSON keeps the full metric keys
SHORT = {
    "recall@1": "R@1",
    "recall@5": "R@5",
    "recall@10": "R@10",
    "mrr": "MRR",
    "ndcg@10": "nDCG@10",
    "pos_above_neg": "pos>neg",
    "accuracy": "acc",
}
COLUMNS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "pos_above_neg", "accuracy")


def print_table(rows: list[dict[str, Any]], file: Any = None) -> None:
    """One line per method, the metrics as columns (blank where a set has no such number)."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    first = rows[0]
    title = f"{first['pairs']}: {first['queries']:,} queries, pool {first['pool']:,}"
    if "distractors" in first:
        added = first["distractors"]
        title += f" (incl. {added['questions']:,} from {added['index']})"
    if "chose_settings" in first:
        title += f"\nnot held out: this set {first['chose_settings']}"
    table = Table(title=title)
    table.add_column("method", no_wrap=True)
    extra = [key for key in rows[0] if key.startswith("recall@") and key not in COLUMNS]
    columns = [c for c in (*COLUMNS, *extra) if any(c in row for row in rows)]
    for column in columns:
        table.add_column(SHORT.get(column, column), justify="right")
    table.add_column("s", justify="right")
    for row in rows:
        cells = [f"{row[c]:.3f}" if c in row else "" for c in columns]
        name = row["method"] + (f" [{row['encoder']}]" if row.get("encoder") else "")
        table.add_row(name, *cells, f"{row['seconds']:.1f}")
    console = Console(file=file or sys.stdout)
    if not console.is_terminal:  # a pipe or file: no terminal width to fit, keep every digit
        console = Console(file=file or sys.stdout, width=200)
    console.print(table)


PairsArg = Annotated[
    Path, typer.Argument(help="Labelled pairs: MQP csv, MEDIQA RQE xml, MeQSum or generic jsonl.")
]
DistractorsOpt = Annotated[
    str | None, typer.Option("--distractors", help="Add every question of this index to the pool.")
]
TuneOpt = Annotated[
    Path | None,
    typer.Option("--tune-on", help="Pairs to tune the accuracy threshold on (not the eval set)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON list, one object per method.")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Embedding model (default all-MiniLM-L6-v2).")
]
MethodOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--method",
        help="Method, repeatable: bm25, dense-exact[:model=M,encoder=torch|onnx] (exact "
        "cosine, torch), simqa[:hub=W,min_score=auto|none|X,encoder=E] (what simqa query "
        "does: int8 onnx encoder, build's index type, hub penalty, min-score), "
        "hybrid-rrf[:bm25=W,dense=W], hybrid-score:bm25=W, truncate:words=N, rerank:model=DIR.",
    ),
]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help="Force the format: mqp, rqe, meqsum, jsonl.")
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", help="Evaluate a seeded sample of this many queries.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for --limit sampling.")]
KOpt = Annotated[int, typer.Option("--k", help="Also report recall@k and ndcg@k for this k.")]


def eval_command(
    pairs: PairsArg,
    distractors: DistractorsOpt = None,
    tune_on: TuneOpt = None,
    as_json: JsonOpt = False,
    model: ModelOpt = None,
    method: MethodOpt = None,
    format: FormatOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    k: KOpt = 10,
) -> None:
    """Measure how often each method ranks the right question first, on labelled pairs."""
    from simqa.evaluate.compare import evaluate

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    rows = evaluate(
        pairs,
        model=model,
        methods=method or None,
        distractors=distractors,
        tune_on=tune_on,
        k=k,
        format=format,
        limit=limit,
        seed=seed,
        log=log,
    )
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)
