"""``simqa adapt``: fine-tune an index's encoder for that index, then re-embed and publish it.

The packaged all-MiniLM-L6-v2 ranks "a question on the same topic" about as high as "the
same question". Fine-tuning on labelled pairs with hard negatives mined among the questions
the index holds (``simqa.learn.tune``) teaches it the near misses it meets there. ``adapt`` does
all of it for one index, offline, on the CPU:

1. training pairs: labelled pairs (``--pairs FILE...``; by default the MEDIQA/AMIA 2016 RQE
   training pairs shipped in ``simqa/data``, CC BY 4.0) and the index's own (title,
   question) pairs where the two differ (``train.corpus_pairs``), a seeded sample of them;
2. a hard negative for each, mined among the index's questions with its stored vectors
   (``train.mine_negatives``): near the anchor, clearly below its positive;
3. MultipleNegativesRankingLoss from the index's base model (``train._fit_bi_encoder``);
4. the model saved inside the index, ``NAME/models/<hash>/``, with its int8 ONNX export in
   ``onnx/`` and ``simqa_training.json`` (what it learnt from, settings, when), and with
   thresholds calibrated on labelled pairs held out from training;
5. every record embedded again with it and published as the index's next version under the
   writer lock (``index.build.reembed``); the manifest names ``models/<hash>``, so appends
   embed with the adapted encoder and the folder stays self-contained (it can be moved).

Adapting an adapted index trains again from the same base model, mining with the adapted
one (a second round of negatives). The same index, pairs and seed give the same model.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

import simqa.index.layout as layout
from simqa.encode.models import training_record
from simqa.encode.threshold import KEEP_SIMILAR
from simqa.errors import SimqaError
from simqa.files import sha256_file
from simqa.learn.training_pairs import TrainPair

#: the packaged default training pairs (see simqa/data/README.md)
DEFAULT_PAIRS = "rqe_amia2016_train.jsonl.gz"
DEFAULT_PAIRS_LABEL = "MEDIQA/AMIA 2016 RQE training pairs (CC BY 4.0, packaged)"
#: labelled pairs held out from training to calibrate the thresholds on
CALIBRATION_PAIRS = 300
#: pairs trained on by default (labelled and the index's own, a seeded sample)
DEFAULT_MAX_PAIRS = 1280
#: passes over them. 2 wins the distractor benchmark (RQE validation, held-out MQP and
#: MeQSum) but readers judged its boxes worse than 1's (P@4 .637 vs .738); a second round
#: of mined negatives loses on all three sets (benchmarks/results/adapt_levers.json)
DEFAULT_EPOCHS = 1.0
#: tokens per text while training (short texts train faster; serving keeps the model's own)
TRAIN_MAX_LENGTH = 64

Log = Callable[[str], None]


def packaged_pairs() -> tuple[list[TrainPair], str]:
    """The packaged RQE training pairs and the sha256 of the packaged file."""
    raw = resources.files("simqa.data").joinpath(DEFAULT_PAIRS).read_bytes()
    pairs = []
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        row = json.loads(line)
        pairs.append(TrainPair(row["anchor"], row["positive"], row.get("negative")))
    return pairs, hashlib.sha256(raw).hexdigest()


def labelled_pairs(
    sources: Sequence[str | Path] | None, log: Log
) -> tuple[list[TrainPair], dict[str, str]]:
    """Pairs from ``sources`` (the protocol checks of ``simqa tune`` apply), or the packaged
    ones; with the {file: sha256} they came from."""
    if not sources:
        pairs, sha = packaged_pairs()
        log(f"{DEFAULT_PAIRS_LABEL}: {len(pairs):,} pairs")
        return pairs, {f"simqa/data/{DEFAULT_PAIRS}": sha}
    from simqa.learn.training_pairs import collect

    pairs, files, _counts = collect(sources, log=log)
    return pairs, files


def base_model(root: Path, manifest_model: str) -> str:
    """The model an adaptation starts from: the index's own, or for an adapted index the
    model that one was adapted from (so adapting twice does not compound)."""
    record = training_record(layout.model_location(root, manifest_model))
    if manifest_model.startswith(f"{layout.MODELS}/") and "base_model" in record:
        return record["base_model"]
    return manifest_model


def adapt(
    index: str | Path,
    pairs: Sequence[str | Path] | None = None,
    *,
    seed: int = 0,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    epochs: float = DEFAULT_EPOCHS,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    own_pairs: bool = True,
    hub_penalty: float | None = None,
    progress: bool = False,
    wait: float = layout.DEFAULT_WAIT_SECONDS,
    log: Log | None = None,
) -> dict[str, Any]:
    """Adapt ``index``'s encoder to it and publish the re-embedded index; returns the
    training record (also in ``models/<hash>/simqa_training.json``) with ``version``.

    ``own_pairs`` adds the index's (title, question) pairs; ``hub_penalty`` sets the new
    version's penalty weight (None keeps the index's).
    """
    say = log or (lambda _m: None)
    if max_pairs < 2:
        raise SimqaError("max pairs must be at least 2")
    if epochs <= 0:
        raise SimqaError("epochs must be positive")
    _need_training_extra()
    from simqa.index import open_index
    from simqa.learn.training_pairs import corpus_pairs, mine_negatives

    started = time.perf_counter()
    root = layout.index_path(index)
    opened = open_index(root, refresh_every=None)
    manifest = opened.manifest
    version = opened.dir.name
    base = base_model(root, manifest.model)
    miner = layout.model_location(root, manifest.model)
    pool, pool_vectors = opened.questions()
    own = corpus_pairs(opened.records()) if own_pairs else []
    opened.close()

    labelled, files = labelled_pairs(pairs, say)
    rng = random.Random(seed)
    labelled = _dedupe(labelled)
    if len(labelled) < 10:
        raise SimqaError(
            f"{len(labelled)} labelled pairs: give at least 10 (some are held out "
            "to calibrate the thresholds on)"
        )
    rng.shuffle(labelled)
    held_out = labelled[: min(CALIBRATION_PAIRS, len(labelled) // 5)]
    train_pairs = _dedupe(labelled[len(held_out) :] + own)
    rng.shuffle(train_pairs)
    train_pairs = train_pairs[:max_pairs]
    say(
        f"{len(train_pairs):,} training pairs ({len(own):,} of the index's own title/question "
        f"pairs in the draw), {len(held_out):,} held out to calibrate on"
    )

    mined = mine_negatives(
        train_pairs + held_out,
        model=miner,
        pool=pool,
        pool_vectors=pool_vectors,
        seed=seed,
        log=say,
    )
    train_pairs = [
        TrainPair(p.anchor, p.positive, p.negative or m)
        for p, m in zip(train_pairs, mined[: len(train_pairs)], strict=True)
    ]
    held_mined = mined[len(train_pairs) :]

    import datasets

    from simqa.learn.tune import _fit_bi_encoder, _load_trainable, _seed_everything

    datasets.disable_progress_bars()  # stderr carries simqa's own progress lines
    _seed_everything(seed)
    st_model, base_name, serve_length = _load_trainable(base)
    st_model.max_seq_length = TRAIN_MAX_LENGTH
    loss, steps = _fit_bi_encoder(
        st_model, train_pairs, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, warmup_ratio=0.1, seed=seed, log=say,
    )  # fmt: skip
    st_model.max_seq_length = serve_length
    trained_seconds = time.perf_counter() - started

    models = root / layout.MODELS
    models.mkdir(exist_ok=True)
    staging = models / f".staging-{uuid.uuid4().hex}"
    st_model.save(str(staging))
    key = _weights_hash(staging)
    final = models / key
    if final.exists():  # the same index, pairs and seed: the same model
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(final)
    _export_onnx(final, say)
    calibration = calibrate_model(str(final), held_out, held_mined, base=base_name)
    say(
        f"calibrated on {len(held_out):,} held-out pairs: min-score {calibration['min_score']}, "
        f"verifier threshold {calibration['verifier']['threshold']}"
    )
    record = {
        "kind": "adapted",
        "index": str(root),
        "adapted_from_version": version,
        "base_model": base_name,
        "mined_with": manifest.model,
        "loss": "MultipleNegativesRankingLoss",
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "max_seq_length": TRAIN_MAX_LENGTH,
        "learning_rate": learning_rate,
        "max_pairs": max_pairs,
        "pairs": len(train_pairs),
        "with_negative": sum(p.negative is not None for p in train_pairs),
        "own_pairs_available": len(own),
        "labelled_pairs": files,
        "files": files,
        "steps": steps,
        "final_loss": loss,
        "train_seconds": round(trained_seconds, 1),
        **calibration,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    from simqa.learn.tune import _write_record

    record = _write_record(final, record)
    say(f"re-embedding the index with models/{key}")
    from simqa.index.build import reembed

    published = reembed(
        root, str(final), record_model=f"{layout.MODELS}/{key}",
        min_score=calibration["min_score"], hub_penalty=hub_penalty, progress=progress,
        wait=wait,
    )  # fmt: skip
    prune_models(root)
    record = {**record, "version": published.name, "model": f"{layout.MODELS}/{key}",
              "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    say(f"published {published.name} in {record['seconds']:.0f}s")
    return record


def calibrate_model(
    model: str, held_out: Sequence[TrainPair], mined: Sequence[str | None], base: str = ""
) -> dict[str, Any]:
    """Thresholds of ``model`` from pairs it was not trained on: the verifier's logistic
    curve P(same question | cosine), fitted on the similar pairs against their labelled and
    mined different questions (its threshold where P = 0.5), and ``min_score`` (see
    ``transfer_min_score``; ``base`` is the model ``model`` was adapted from)."""
    from simqa.encode.encoder import shared_encoder

    encoder = shared_encoder(model)  # as the engine encodes (int8 onnx where it can)
    lefts, rights, labels = [], [], []
    for pair, hard in zip(held_out, mined, strict=True):
        lefts.append(pair.anchor)
        rights.append(pair.positive)
        labels.append(True)
        for negative in (pair.negative, hard):
            if negative is not None and negative != pair.positive:
                lefts.append(pair.anchor)
                rights.append(negative)
                labels.append(False)
    texts = list(dict.fromkeys(lefts + rights))
    vectors = dict(zip(texts, encoder.encode(texts), strict=True))
    scores = np.array([float(vectors[a] @ vectors[b]) for a, b in zip(lefts, rights, strict=True)])
    y = np.asarray(labels)
    from simqa.box.verify import fit_logistic

    slope, intercept = fit_logistic(scores, y)
    return {
        "min_score": transfer_min_score(base, slope, intercept, scores[y]),
        "verifier": {
            "kind": "cosine-logistic",
            "slope": round(slope, 4),
            "intercept": round(intercept, 4),
            "threshold": round(-intercept / slope, 4),
            "pairs": len(y),
            "similar": int(y.sum()),
        },
    }


def transfer_min_score(base: str, slope: float, intercept: float, similar: np.ndarray) -> float:
    """The adapted model's "nothing similar" cosine: where its verifier is as sure as the base
    model's verifier is at the base's calibrated min-score (0.36 for the packaged model,
    chosen on RQE validation), so the threshold means the same after adapting. A base with
    neither known keeps ``KEEP_SIMILAR`` of the held-out similar pairs instead."""
    from simqa.box.verify import PACKAGED
    from simqa.encode.threshold import CALIBRATED

    if base in PACKAGED and base in CALIBRATED:
        known = PACKAGED[base]
        z = known["slope"] * CALIBRATED[base] + known["intercept"]
        return math.floor((z - intercept) / slope * 100) / 100
    ranked = np.sort(similar)
    return math.floor(ranked[math.floor((1 - KEEP_SIMILAR) * len(ranked))] * 100) / 100


def prune_models(root: Path) -> list[str]:
    """Remove adapted models no version of the index names any more (and staging leftovers
    of killed runs older than the grace period); returns what was removed."""
    models = root / layout.MODELS
    if not models.is_dir():
        return []
    used = set()
    for version in root.iterdir():
        manifest = version / "manifest.json"
        if version.is_dir() and manifest.is_file():
            try:
                used.add(json.loads(manifest.read_text(encoding="utf-8")).get("model", ""))
            except ValueError:
                continue
    removed = []
    now = time.time()
    for folder in models.iterdir():
        stale = folder.name.startswith(".staging-") and (
            now - folder.stat().st_mtime > layout.GRACE_SECONDS
        )
        if f"{layout.MODELS}/{folder.name}" not in used and (
            stale or not folder.name.startswith(".")
        ):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def model_card(index_root: Path, manifest_model: str) -> dict[str, Any] | None:
    """What ``simqa info`` says about an adapted encoder: trained on what, when, how."""
    data = training_record(layout.model_location(index_root, manifest_model))
    if not manifest_model.startswith(f"{layout.MODELS}/") or not data:
        return None
    files = " + ".join(data.get("labelled_pairs", {})) or "-"
    return {
        "from": data.get("base_model"),
        "trained_on": f"{data.get('pairs'):,} pairs drawn from {files} and "
        f"{data.get('own_pairs_available'):,} title/question pairs of the index, hard "
        f"negatives mined among its questions with {data.get('mined_with')}",
        "seed": data.get("seed"),
        "epochs": data.get("epochs"),
        "when": data.get("date"),
        "train_seconds": data.get("train_seconds"),
        "verifier_threshold": (data.get("verifier") or {}).get("threshold"),
    }


def _dedupe(pairs: Sequence[TrainPair]) -> list[TrainPair]:
    seen: set[tuple[str, str]] = set()
    out = []
    for pair in pairs:
        key = (pair.anchor, pair.positive)
        if pair.anchor != pair.positive and key not in seen:
            seen.add(key)
            out.append(pair)
    return out


def _weights_hash(folder: Path) -> str:
    """A short hash of the saved weights: the model folder's name."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin")):
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()[:16]


def _export_onnx(folder: Path, log: Log) -> None:
    """The int8 ONNX export, kept inside the model folder (``onnx_export.BUNDLED``); the
    float export it is quantised from (90 MB for MiniLM) is not kept."""
    from simqa.encode.onnx_export import BUNDLED, FP32, INT8, META, export

    if (folder / BUNDLED / META).is_file() and (folder / BUNDLED / INT8).is_file():
        return
    started = time.perf_counter()
    export(str(folder), folder / BUNDLED, quantize=True)
    (folder / BUNDLED / FP32).unlink(missing_ok=True)
    log(f"int8 onnx export in {time.perf_counter() - started:.0f}s")


def _need_training_extra() -> None:
    missing = []
    for module in ("datasets", "accelerate"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise SimqaError(f"simqa adapt needs {' and '.join(missing)}: pip install 'simqa[train]'")
