"""``simqa tune``: the command over fine-tuning (``simqa.train``) and reranker training
(``simqa.rerank``), kept apart so that neither training module imports the other's user."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from simqa.rerank import train_reranker
from simqa.train import fine_tune

SourcesArg = Annotated[
    list[Path],
    typer.Argument(help="Training pairs (RQE xml, anchor/positive jsonl, ...) or corpus folders."),
]


def tune_command(
    sources: SourcesArg,
    out: Annotated[Path, typer.Option("--out", help="Directory for the trained model.")],
    model: Annotated[
        str | None, typer.Option("--model", help="Base model (default all-MiniLM-L6-v2).")
    ] = None,
    evaluating: Annotated[
        list[Path] | None,
        typer.Option("--evaluating", help="A file you will evaluate on: refused as training data."),
    ] = None,
    reranker: Annotated[
        bool, typer.Option("--reranker", help="Train a cross-encoder reranker instead.")
    ] = False,
    epochs: Annotated[float, typer.Option(help="Passes over the training pairs.")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Pairs per batch (in-batch negatives).")] = 32,
    max_length: Annotated[
        int | None,
        typer.Option(help="Tokens kept per text (pair for --reranker) while training."),
    ] = None,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-5,
    max_pairs: Annotated[
        int | None, typer.Option(help="Train on a seeded sample of this many pairs.")
    ] = None,
    mine: Annotated[
        bool | None,
        typer.Option(help="Mine a hard negative per pair with the base model "
                     "(default: on for --reranker, off otherwise)."),
    ] = None,
    negatives_from: Annotated[
        str | None,
        typer.Option(help="Also mine hard negatives among this index's questions (implies mine)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling, shuffling and training.")] = 0,
    save_pairs: Annotated[
        Path | None, typer.Option(help="Also write the training pairs as anchor/positive JSONL.")
    ] = None,
    calibrate_on: Annotated[
        Path | None,
        typer.Option(help="Validation pairs to calibrate the model's default --min-score on."),
    ] = None,
) -> None:
    """Fine-tune the embedding model (or train a reranker) on labelled pairs, on the CPU."""

    def log(message: str) -> None:
        typer.echo(message, err=True)

    common = dict(
        model=model, evaluating=evaluating or (), epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, max_pairs=max_pairs, seed=seed, save_pairs=save_pairs,
        log=log,
    )
    if reranker:
        record = train_reranker(
            sources, out, max_length=max_length or 256, mine=True if mine is None else mine,
            **common,
        )
    else:
        record = fine_tune(sources, out, max_seq_length=max_length or 128, mine=bool(mine),
                      negatives_from=negatives_from, calibrate_on=calibrate_on, **common)
    typer.echo(json.dumps(record, indent=2))
