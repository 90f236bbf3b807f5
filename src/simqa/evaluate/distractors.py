"""Questions of a built simqa index, added to an evaluation pool as distractors.

A set's own pool is small (hundreds to a few thousand questions); a real index holds tens
of thousands, and recall drops as the pool grows. Adding an index's questions measures the
method in a pool the size of the one users search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simqa.errors import SimqaError
from simqa.evaluate.embedcache import EmbeddingCache, texts_checksum


@dataclass
class Distractors:
    """The index's distinct question texts, as it embedded them."""

    index: str
    model: str
    texts: list[str]
    checksum: str


def load_distractors(index: str | Path, cache: EmbeddingCache) -> Distractors:
    """Read every question of ``index``; hand its stored vectors to ``cache`` for its model.

    Methods on another model embed these texts through the disk cache instead.
    """
    from simqa.index import open_index

    opened = open_index(index)
    try:
        manifest = opened.manifest
        texts, vectors = opened.questions()
        if not texts:
            raise SimqaError(f"index {index} holds no questions to use as distractors")
        # reuse only torch-made vectors: an onnx index's may come from another export recipe
        if manifest.encoder == "torch":
            cache.preload(manifest.model, texts, vectors)
        return Distractors(str(index), manifest.model, texts, texts_checksum(texts))
    finally:
        opened.close()
