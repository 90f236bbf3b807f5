"""``simqa tune``, ``adapt`` and ``calibrate``: training the encoder (``simqa.learn``) and
measuring its threshold (``simqa.evaluate.calibrate``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from simqa.cli.options import IndexOpt, WaitOpt, echo

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
    from simqa.learn.rerank import train_reranker
    from simqa.learn.tune import fine_tune

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
    from simqa.learn.adapt import adapt as adapt_index

    def log(message: str) -> None:
        typer.echo(message, err=True)

    record = adapt_index(
        index, pairs, seed=seed, max_pairs=max_pairs, epochs=epochs, hub_penalty=hub_penalty,
        wait=wait, progress=sys.stderr.isatty(), log=log,
    )  # fmt: skip
    echo(json.dumps(record, indent=2))



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
    echo(json.dumps(result, indent=2))

