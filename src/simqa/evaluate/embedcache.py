"""Embeddings for an evaluation run: each text is embedded once per model, encoder and run.

Methods that share a model and encoder (dense-exact and hybrid-rrf on torch; simqa on the
encoder ``simqa query`` uses, int8 onnx by default) share vectors through one
``EmbeddingCache``. Large fixed text lists (the distractors of an index, ~47k questions)
can also be kept on disk, keyed by the model, the encoder (with the onnx export's recipe)
and a checksum of the texts, so that the next run loads them instead of re-embedding.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simqa.encode.encoder import shared_encoder
from simqa.encode.models import resolve_model
from simqa.files import cache_dir

#: the encoder of the evaluation's exact baselines: sentence-transformers itself
TORCH = "torch"


def model_fingerprint(name: str) -> str:
    """The model's name, plus sizes and times of its files when it is a local directory,
    so that a retrained model in the same folder never reuses stale vectors."""
    path = Path(name)
    if not path.is_dir():
        return name
    parts = [name]
    for file in sorted(path.rglob("*")):
        if file.is_file():
            stat = file.stat()
            parts.append(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(parts)


def texts_checksum(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


class EmbeddingCache:
    """Loaded encoders and the vectors of every text seen in this run, per model and encoder.

    ``encoder`` is ``torch`` (sentence-transformers), ``onnx`` or ``auto`` (what ``simqa
    build`` and ``query`` use: onnx where the model allows it, else torch).
    """

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._encoders: dict[tuple[str, str], Any] = {}
        self._vectors: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        self._matrices: dict[tuple[str, str, str], np.ndarray] = {}
        #: a large fixed text list (distractors) embedded through the disk cache
        self.bulk: list[str] = []
        #: seconds spent in the model, per ``label(model, encoder)``
        self.seconds: dict[str, float] = {}

    def model_name(self, model: str | None) -> str:
        return resolve_model(model)[0]

    def encoder(self, model: str | None, encoder: str = TORCH) -> Any:
        key = (self.model_name(model), encoder)
        if key not in self._encoders:
            self._encoders[key] = shared_encoder(model, encoder)
        return self._encoders[key]

    def kind(self, model: str | None, encoder: str = TORCH) -> str:
        """The encoder that ``encoder`` resolves to for this model (``auto`` -> onnx/torch)."""
        return str(self.encoder(model, encoder).kind)

    def label(self, model: str | None, encoder: str = TORCH) -> str:
        """``model`` for torch, ``model [onnx]`` otherwise: the key of ``seconds``."""
        kind = self.kind(model, encoder)
        name = self.model_name(model)
        return name if kind == TORCH else f"{name} [{kind}]"

    def _memo(self, model: str | None, encoder: str) -> dict[str, np.ndarray]:
        return self._vectors.setdefault((self.model_name(model), self.kind(model, encoder)), {})

    def preload(
        self, model: str | None, texts: Sequence[str], vectors: np.ndarray, encoder: str = TORCH
    ) -> None:
        """Make vectors computed elsewhere (an index, a disk cache) known to this run."""
        memo = self._memo(model, encoder)
        for text, vector in zip(texts, vectors, strict=True):
            memo.setdefault(text, vector)

    def encode(self, model: str | None, texts: Sequence[str], encoder: str = TORCH) -> np.ndarray:
        """Unit vectors for ``texts``; only texts not seen before in this run are embedded."""
        memo = self._memo(model, encoder)
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            started = time.perf_counter()
            fresh = self.encoder(model, encoder).encode(missing, batch_size=self.batch_size)
            label = self.label(model, encoder)
            self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started
            for text, vector in zip(missing, fresh, strict=True):
                memo[text] = vector
        if not texts:
            return np.zeros((0, self.encoder(model, encoder).dim), dtype=np.float32)
        return np.stack([memo[t] for t in texts]).astype(np.float32, copy=False)

    def matrix(
        self, model: str | None, texts: Sequence[str], key: str, encoder: str = TORCH
    ) -> np.ndarray:
        """``encode`` for a large list used many times (a pool), stacked once per key."""
        full = (self.model_name(model), self.kind(model, encoder), key)
        if full not in self._matrices:
            memo = self._memo(model, encoder)
            if self.bulk and not all(t in memo for t in self.bulk):
                self.encode_on_disk(model, self.bulk, encoder)
            self._matrices[full] = np.ascontiguousarray(self.encode(model, texts, encoder))
        return self._matrices[full]

    def encode_on_disk(
        self, model: str | None, texts: Sequence[str], encoder: str = TORCH
    ) -> np.ndarray:
        """``encode``, reading and writing a disk cache keyed by model, encoder and texts."""
        name = self.model_name(model)
        kind = self.kind(model, encoder)
        tag = "" if kind == TORCH else f"\0{kind}:{_export_recipe()}"
        key = hashlib.sha256(
            (model_fingerprint(name) + tag + "\0" + texts_checksum(texts)).encode()
        ).hexdigest()[:32]
        path = cache_dir() / "embeddings" / f"{key}.npy"
        if path.exists():
            try:
                vectors = np.load(path)
            except (OSError, ValueError):
                vectors = None
            if vectors is not None and vectors.shape[0] == len(texts):
                self.preload(model, texts, vectors, encoder)
                return vectors
        vectors = self.encode(model, texts, encoder)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(partial, vectors)
        partial.replace(path)
        return vectors


def _export_recipe() -> str:
    """The onnx export's format and recipe: vectors of another export are not reused."""
    from simqa.encode.onnx_export import EXPORT_FORMAT, RECIPE

    return f"{EXPORT_FORMAT}:{RECIPE}"
