"""Turn question text into unit vectors with a sentence-transformers model, offline.

Loading a model costs seconds, so a process keeps one loaded encoder per (model, kind)
(``shared_encoder``) and every index opened in it reuses that one.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from simqa.encode.models import resolve_model
from simqa.errors import SimqaError


class Encoder:
    """A loaded embedding model; load it once per process and reuse it for every query."""

    kind = "torch"
    #: recorded in an index's manifest (the onnx encoder's names its export recipe)
    recipe = "sentence-transformers"

    def __init__(self, model: str | None = None, threads: int | None = None) -> None:
        self.name, location = resolve_model(model)
        if threads:
            import torch

            torch.set_num_threads(threads)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.model = SentenceTransformer(location, device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise SimqaError(
                f"cannot load model {model!r} offline: give a local model directory "
                f"or a model already in the Hugging Face cache ({type(exc).__name__})"
            ) from None
        self.dim = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, so inner product is cosine."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_encoder(model: str | None = None, kind: str = "torch", threads: int | None = None):
    """The encoder for ``model`` of the given kind (``torch``; ``onnx`` where available)."""
    if kind == "torch":
        return Encoder(model, threads=threads)
    if kind == "onnx":
        from simqa.encode.onnx_runtime import OnnxEncoder

        return OnnxEncoder(model, threads=threads)
    raise SimqaError(f"unknown encoder {kind!r}; choose torch or onnx")


#: int8 ONNX where the model allows it: MQP recall@1 within 0.3 points of torch, 4x faster
#: per query (benchmarks/results/encoder.json); an index is queried with the encoder it
#: was built with.
DEFAULT_ENCODER = "auto"
_ENCODERS: dict[tuple[str, str], Any] = {}
_ENCODERS_LOCK = threading.Lock()


def threads() -> int | None:
    """The thread count asked for with ``$SIMQA_THREADS`` (``simqa --threads``), if any."""
    value = os.environ.get("SIMQA_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise SimqaError(f"SIMQA_THREADS must be a positive whole number, got {value!r}")
    return int(value)


def shared_encoder(model: str | None, kind: str = DEFAULT_ENCODER) -> Any:
    """One loaded encoder per (model, kind) per process, safe to call from many threads.

    ``auto`` means onnx, or torch for a model the onnx export does not support (e.g. one
    with a Dense head); the encoder's ``kind`` attribute says which one it is.
    """
    key = (resolve_model(model)[0], kind)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            if kind == "auto":
                try:
                    _ENCODERS[key] = _load_unlocked(model, "onnx")
                except SimqaError:
                    _ENCODERS[key] = _load_unlocked(model, "torch")
            else:
                _ENCODERS[key] = _load_unlocked(model, kind)
        return _ENCODERS[key]


def _load_unlocked(model: str | None, kind: str) -> Any:
    key = (resolve_model(model)[0], kind)
    if key not in _ENCODERS:
        _ENCODERS[key] = load_encoder(model, kind=kind, threads=threads())
    return _ENCODERS[key]
