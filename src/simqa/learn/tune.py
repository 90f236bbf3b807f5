"""Fine-tune the embedding model on labelled question pairs: ``simqa tune``.

Training pairs come from three kinds of source, all read into ``TrainPair``:

- pairs files that ``simqa eval`` also reads (MEDIQA RQE xml, MQP csv, MeQSum or query
  jsonl): each query with each of its positives, and one of its hard negatives when the
  file labels some (RQE's "false" pairs);
- training-pair JSONL, one ``{"anchor": str, "positive": str, "negative": str?}`` a line
  (``write_pairs`` writes it; ``simqa tune --save-pairs`` exports what a run trained on);
- corpora that ``simqa build`` reads (folders or files): each consultation's title with its
  question text, where both exist and neither repeats the other (self-supervised pairs:
  a patient's one-line summary and their full question ask the same thing).

The loss is sentence-transformers' MultipleNegativesRankingLoss: every other positive in
the batch is a negative, and so is the pair's own hard negative when it has one. The
result is a sentence-transformers model directory that ``simqa build --model DIR`` and
``simqa eval --model DIR`` take, with ``simqa_training.json`` beside it naming the seed,
the settings and every training file's sha256. ``simqa eval`` refuses to evaluate such a
model on a file it was trained on; ``simqa tune`` refuses the shared evaluation sets by name
and any file given with ``--evaluating``.
"""

from __future__ import annotations

import fnmatch
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simqa.encode.models import TRAINING_RECORD
from simqa.errors import SimqaError
from simqa.files import sha256_file, sha256_tree
from simqa.records import normalise

#: written into every tuned model directory
#: evaluation and validation sets of the shared data: never trained on (file name patterns)
KNOWN_EVALUATION = (
    "mqp.csv",  # Curai MQP, the shared half; the other half is kept back
    "meqsum*.jsonl",
    "MeQSum*.xlsx",
    "*RQE-ValidationSet*",  # tunes thresholds and settings
    "*TestSet*",
)


@dataclass(frozen=True)
class TrainPair:
    """Two texts that ask the same thing, and optionally one that asks something else."""

    anchor: str
    positive: str
    negative: str | None = None


Log = Callable[[str], None]


# --- reading training data ----------------------------------------------------------------


def source_kind(path: Path) -> str:
    """``train`` (anchor/positive JSONL), ``pairs`` (an eval-format file) or ``corpus``."""
    if path.is_dir():
        return "corpus"
    if not path.is_file():
        raise SimqaError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8") as handle:
            head = handle.read(4096).lstrip("\ufeff \t\r\n")
    except UnicodeDecodeError:
        return "corpus"  # the corpus loaders report bad bytes with a position
    if suffix in {".jsonl", ".ndjson", ".json"} and head.startswith("{"):
        try:
            keys = set(json.loads(head.splitlines()[0]))
        except ValueError:
            keys = set()
        if "anchor" in keys:
            return "train"
        if {"chq", "summary"} <= keys or "query" in keys:
            return "pairs"
        return "corpus"
    if suffix == ".xml" and "<pair" in head:
        return "pairs"
    if suffix in {".csv", ".tsv"}:
        from simqa.ingest import detect_format

        return "corpus" if detect_format(path) else "pairs"
    return "corpus"


def read_training(path: str | Path) -> list[TrainPair]:
    """Every training pair one source holds (see the module docstring for the kinds)."""
    path = Path(path).expanduser()
    kind = source_kind(path)
    if kind == "train":
        return read_pairs_jsonl(path)
    if kind == "pairs":
        from simqa.evaluate.pairs import read_pairs

        return pairs_from_labelled(read_pairs(path).queries)
    from simqa.ingest import load

    return corpus_pairs(load([path]))


def pairs_from_labelled(queries: Iterable[Any]) -> list[TrainPair]:
    """(query, positive, hard negative) from ``EvalQuery``-like objects.

    A positive equal to its query teaches nothing and is left out; negatives are handed
    out in turn, so a query with two positives and two negatives uses both negatives.
    """
    out = []
    for query in queries:
        positives = [p for p in query.positives if p != query.text]
        negatives = list(query.negatives)
        for i, positive in enumerate(positives):
            negative = negatives[i % len(negatives)] if negatives else None
            out.append(TrainPair(query.text, positive, negative))
    return out


def corpus_pairs(records: Iterable[Any]) -> list[TrainPair]:
    """(title, question) of every consultation whose title and question both say something.

    Titles that are the question's first words, or equal to it, are skipped; so are
    titles the question contains, such as MedQuAD's focus titles ("Sickle cell anemia" for
    "What causes sickle cell anemia?"), which name a topic rather than ask the question:
    pairing them would teach that a topic and a question on it are the same question.
    """
    out = []
    for record in records:
        title, question = normalise(record.title), normalise(record.question)
        if not title or not question or len(title.split()) < 3:
            continue
        stem = title.casefold().rstrip("?.! ")
        if question.casefold().startswith(stem) or stem in question.casefold():
            continue
        out.append(TrainPair(title, question))
    return out


def read_pairs_jsonl(path: Path) -> list[TrainPair]:
    """Training-pair JSONL: ``{"anchor", "positive", "negative"?}`` per line."""
    from simqa.evaluate.pairs import json_lines

    out = []
    for where, record in json_lines(path):
        texts = {}
        for key in ("anchor", "positive", "negative"):
            value = record.get(key)
            if value is None and key == "negative":
                continue
            if not isinstance(value, str) or not normalise(value):
                raise SimqaError(f'{where}: "{key}" must be non-empty text')
            texts[key] = normalise(value)
        out.append(TrainPair(**texts))
    return out


def write_pairs(pairs: Iterable[TrainPair], path: str | Path) -> int:
    """Write training-pair JSONL (no ``negative`` key when there is none); returns the count."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for pair in pairs:
            record = {k: v for k, v in asdict(pair).items() if v is not None}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


# --- protocol hygiene ---------------------------------------------------------------------


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def refuse_evaluation_files(
    sources: Sequence[Path], evaluating: Sequence[str | Path] = ()
) -> None:
    """Raise if any training file is a known evaluation set or one of ``evaluating``."""
    held_out = {}
    for item in evaluating:
        item = Path(item).expanduser()
        if not item.is_file():
            raise SimqaError(f"{item}: no such evaluation file")
        held_out[sha256_file(item)] = item
    for source in sources:
        for member in _files(source):
            for pattern in KNOWN_EVALUATION:
                if fnmatch.fnmatch(member.name, pattern):
                    raise SimqaError(
                        f"refusing to train on {member}: it is an evaluation set ({pattern}); "
                        "train on training data and corpora only"
                    )
            if held_out and sha256_file(member) in held_out:
                raise SimqaError(
                    f"refusing to train on {member}: it is the evaluation file "
                    f"{held_out[sha256_file(member)]}"
                )


# --- training -----------------------------------------------------------------------------


def collect(
    sources: Sequence[str | Path],
    evaluating: Sequence[str | Path] = (),
    log: Log | None = None,
) -> tuple[list[TrainPair], dict[str, str], dict[str, int]]:
    """Read every source after the protocol checks: (pairs, {file: sha256}, {file: count}).

    Pairs are deduplicated (anchor, positive) in first-seen order.
    """
    say = log or (lambda _m: None)
    paths = [Path(s).expanduser() for s in sources]
    if not paths:
        raise SimqaError("give at least one training file or corpus folder")
    for path in paths:
        if not path.exists():
            raise SimqaError(f"{path}: no such file or directory")
    refuse_evaluation_files(paths, evaluating)
    seen: set[tuple[str, str]] = set()
    pairs: list[TrainPair] = []
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    for path in paths:
        found = read_training(path)
        kept = 0
        for pair in found:
            key = (pair.anchor, pair.positive)
            if pair.anchor == pair.positive or key in seen:
                continue
            seen.add(key)
            pairs.append(pair)
            kept += 1
        files[str(path)] = sha256_tree(path)
        counts[str(path)] = kept
        say(f"{path}: {kept:,} training pairs ({source_kind(path)})")
    if not pairs:
        raise SimqaError("the training sources hold no usable pairs")
    return pairs, files, counts


def mine_negatives(
    pairs: Sequence[TrainPair],
    model: str | None = None,
    *,
    pool: Sequence[str] = (),
    pool_vectors: Any = None,
    window: tuple[int, int] = (1, 20),
    margin: float = 0.05,
    seed: int = 0,
    log: Log | None = None,
) -> list[str | None]:
    """For each pair, another pair's positive (or a ``pool`` text) that ``model`` ranks near
    the anchor (within ``window`` of its ranking) yet at least ``margin`` below the pair's
    own positive; None where there is none. The margin and skipping rank 0 keep away from
    unlabelled paraphrases, which would be false negatives. A ``pool`` of the questions an
    index will be searched over teaches the model the near misses it will meet there;
    ``pool_vectors`` (the index's own, from ``model``) saves embedding it again."""
    import numpy as np

    from simqa.encode.encoder import load_encoder

    say = log or (lambda _m: None)
    started = time.perf_counter()
    encoder = load_encoder(model)
    positives = list(dict.fromkeys(p.positive for p in pairs))
    taken = set(positives)
    extra = [i for i, text in enumerate(pool) if text not in taken]
    corpus = positives + [pool[i] for i in extra]
    anchors = list(dict.fromkeys(p.anchor for p in pairs))
    at = {text: i for i, text in enumerate(corpus)}
    own: dict[str, set[int]] = {}
    for p in pairs:
        own.setdefault(p.anchor, set()).add(at[p.positive])
    if pool_vectors is None:
        cvec = encoder.encode(corpus)
    else:
        known = np.asarray(pool_vectors, dtype=np.float32)[extra]
        cvec = np.concatenate([encoder.encode(positives), known.reshape(-1, encoder.dim)])
    avec = encoder.encode(anchors)
    row = {text: i for i, text in enumerate(anchors)}
    lo, hi = window
    hi = min(hi, len(corpus))
    rng = random.Random(seed)
    best: dict[str, list[tuple[int, float]]] = {}
    for start in range(0, len(anchors), 512):
        sims = avec[start : start + 512] @ cvec.T
        top = np.argsort(-sims, axis=1)[:, :hi]
        for offset, ranked in enumerate(top):
            text = anchors[start + offset]
            best[text] = [(int(j), float(sims[offset, j])) for j in ranked[lo:]]
    out: list[str | None] = []
    for p in pairs:
        floor = float(avec[row[p.anchor]] @ cvec[at[p.positive]]) - margin
        valid = [j for j, s in best[p.anchor] if j not in own[p.anchor] and s < floor]
        out.append(corpus[rng.choice(valid[:5])] if valid else None)
    found = sum(m is not None for m in out)
    say(f"mined {found:,} hard negatives for {len(pairs):,} pairs "
        f"in {time.perf_counter() - started:.0f}s")
    return out


def index_questions(index: str | Path, model: str | None = None) -> tuple[list[str], Any]:
    """Every distinct question an index embeds, with the index's stored vectors for them
    when it was built with ``model`` (else None: they must be embedded again)."""
    from simqa.encode.models import resolve_model
    from simqa.index import open_index

    opened = open_index(index, verify=False)
    try:
        texts, vectors = opened.questions()
        return texts, vectors if opened.manifest.model == resolve_model(model)[0] else None
    finally:
        opened.close()


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


# --- command line -------------------------------------------------------------------------
