"""Fine-tune the embedding model on training pairs (``simqa.learn.training_pairs``): ``simqa tune``.

The loss is sentence-transformers' MultipleNegativesRankingLoss: every other positive in
the batch is a negative, and so is the pair's own hard negative when it has one. The
result is a sentence-transformers model directory that ``simqa build --model DIR`` and
``simqa eval --model DIR`` take, with ``simqa_training.json`` beside it naming the seed,
the settings and every training file's sha256. ``simqa eval`` refuses to evaluate such a
model on a file it was trained on.
"""


from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simqa.encode.models import TRAINING_RECORD
from simqa.errors import SimqaError
from simqa.learn.training_pairs import (
    Log,
    TrainPair,
    collect,
    index_questions,
    mine_negatives,
    write_pairs,
)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fine_tune(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    model: str | None = None,
    evaluating: Sequence[str | Path] = (),
    epochs: float = 1.0,
    batch_size: int = 32,
    max_seq_length: int = 128,
    learning_rate: float = 5e-5,
    warmup_ratio: float = 0.1,
    max_pairs: int | None = None,
    mine: bool = False,
    negatives_from: str | Path | None = None,
    seed: int = 0,
    save_pairs: str | Path | None = None,
    calibrate_on: str | Path | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` (default all-MiniLM-L6-v2) on the sources; save it to ``out``.

    ``mine`` gives pairs without a labelled negative one mined with the base model;
    ``negatives_from`` (an index) adds its questions to what is mined from, and implies it.
    ``calibrate_on`` (labelled validation pairs) records the new model's min-score
    threshold, which indexes built with it then use by default.

    Returns the training record also written to ``out/simqa_training.json``: base model,
    seed, settings, files with sha256, pair counts, steps, final loss and wall seconds.
    """
    say = log or (lambda _m: None)
    if batch_size < 2:
        raise SimqaError("batch size must be at least 2 (the other pairs are the negatives)")
    if epochs <= 0:
        raise SimqaError("epochs must be positive")
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not (out / TRAINING_RECORD).exists():
        raise SimqaError(f"{out} exists and is not a model made by simqa tune; choose another")
    if calibrate_on is not None:
        from simqa.evaluate.pairs import same_file

        for item in evaluating:
            if same_file(calibrate_on, item):
                raise SimqaError(f"refusing to calibrate on {calibrate_on}: it is evaluated")
    pairs, files, counts = collect(sources, evaluating, log)
    rng = random.Random(seed)
    rng.shuffle(pairs)
    if max_pairs is not None:
        if max_pairs < 2:
            raise SimqaError("max pairs must be at least 2")
        pairs = pairs[:max_pairs]
    started = time.perf_counter()
    _seed_everything(seed)
    if mine or negatives_from is not None:
        pool, vectors = index_questions(negatives_from, model) if negatives_from else ([], None)
        mined = mine_negatives(
            pairs, model=model, pool=pool, pool_vectors=vectors, seed=seed, log=say
        )
        pairs = [TrainPair(p.anchor, p.positive, p.negative or m)
                 for p, m in zip(pairs, mined, strict=True)]
    if save_pairs is not None:
        write_pairs(pairs, save_pairs)
        say(f"wrote {len(pairs):,} training pairs to {save_pairs}")
    st_model, base_name, base_length = _load_trainable(model)
    st_model.max_seq_length = max_seq_length
    loss_value, steps = _fit_bi_encoder(
        st_model, pairs, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, warmup_ratio=warmup_ratio, seed=seed, log=say,
    )
    # serve with the base model's length: training short only saves time
    st_model.max_seq_length = base_length
    out.mkdir(parents=True, exist_ok=True)
    st_model.save(str(out))
    seconds = round(time.perf_counter() - started, 1)
    record = {
        "kind": "bi-encoder",
        "base_model": base_name,
        "loss": "MultipleNegativesRankingLoss",
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "max_seq_length": max_seq_length,
        "learning_rate": learning_rate,
        "warmup_ratio": warmup_ratio,
        "mined": mine or negatives_from is not None,
        "negatives_from": str(negatives_from) if negatives_from is not None else None,
        "pairs": len(pairs),
        "with_negative": sum(p.negative is not None for p in pairs),
        "pairs_per_file": counts,
        "files": files,
        "steps": steps,
        "final_loss": loss_value,
        "seconds": seconds,
    }
    if calibrate_on is not None:
        from simqa.evaluate.calibrate import calibrate

        calibrated = calibrate(calibrate_on, str(out))
        record["min_score"] = calibrated["min_score"]
        record["calibration"] = {k: calibrated[k] for k in ("pairs", "sha256", "accuracy")}
        say(f"min-score {calibrated['min_score']} (accuracy {calibrated['accuracy']} "
            f"on {calibrate_on})")
    record = _write_record(out, record)
    say(f"trained {steps} steps on {len(pairs):,} pairs in {seconds:.0f}s; saved to {out}")
    return record


def _write_record(out: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``simqa_training.json`` (with the simqa version) and return what was written."""
    from importlib.metadata import version

    __version__ = version("simqa")
    record = {**record, "simqa": __version__}
    (out / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _load_trainable(model: str | None) -> tuple[Any, str, int]:
    """A SentenceTransformer to train, its recorded name and its serving max_seq_length."""
    from simqa.encode.encoder import load_encoder

    encoder = load_encoder(model)
    return encoder.model, encoder.name, int(encoder.model.max_seq_length)


def _train_args(*, epochs: float, batch_size: int, learning_rate: float,
                warmup_ratio: float, seed: int, cls: Any, **extra: Any) -> Any:
    """Trainer arguments for a short CPU run that keeps no checkpoints."""
    import tempfile

    return cls(
        output_dir=tempfile.mkdtemp(prefix="simqa-train-"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=warmup_ratio,  # a float below 1 is a fraction of the steps
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=10,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **extra,
    )


def _fit_bi_encoder(st_model: Any, pairs: Sequence[TrainPair], *, epochs: float,
                    batch_size: int, learning_rate: float, warmup_ratio: float,
                    seed: int, log: Log) -> tuple[float | None, int]:
    """MultipleNegativesRankingLoss; pairs with and without a negative are separate datasets
    (a batch holds columns of one shape), sampled in proportion to their sizes."""
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        MultiDatasetBatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    parts = {}
    triples = [p for p in pairs if p.negative is not None]
    doubles = [p for p in pairs if p.negative is None]
    if triples:
        parts["triples"] = Dataset.from_dict({
            "anchor": [p.anchor for p in triples],
            "positive": [p.positive for p in triples],
            "negative": [p.negative for p in triples],
        })
    if doubles:
        parts["pairs"] = Dataset.from_dict({
            "anchor": [p.anchor for p in doubles],
            "positive": [p.positive for p in doubles],
        })
    args = _train_args(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        warmup_ratio=warmup_ratio, seed=seed, cls=SentenceTransformerTrainingArguments,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
    )
    trainer = SentenceTransformerTrainer(
        model=st_model,
        args=args,
        train_dataset=DatasetDict(parts) if len(parts) > 1 else next(iter(parts.values())),
        loss=MultipleNegativesRankingLoss(st_model),
    )
    result = run_trainer(trainer, log)
    _cleanup(args.output_dir)
    return _final_loss(trainer, result), int(result.global_step)


def run_trainer(trainer: Any, log: Log) -> Any:
    """``trainer.train()`` with progress lines through ``log`` (stderr on the command line),
    not printed to stdout, which carries the training record."""
    from transformers import PrinterCallback, TrainerCallback

    class Progress(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs:
                log(f"step {state.global_step}/{state.max_steps}: loss {float(logs['loss']):.4f}")

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(Progress())
    return trainer.train()


def _final_loss(trainer: Any, result: Any) -> float | None:
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    value = losses[-1] if losses else getattr(result, "training_loss", None)
    return round(float(value), 4) if value is not None else None


def _cleanup(folder: str) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


