"""Questions of a built simqa index, added to an evaluation pool as distractors.

A set's own pool is small (hundreds to a few thousand questions); a real index holds tens
of thousands, and recall drops as the pool grows. Adding an index's questions measures the
method in a pool the size of the one users search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simqa.errors import SimqaError
from simqa.evaluate.embedcache import EmbeddingCache, texts_checksum
from simqa.records import normalise


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
        fields = getattr(manifest, "embed_fields", "title+question")
        by_vid: dict[int, str] = {}
        for vid, record in opened.store.iter_records():
            text = normalise(record.embedding_text(fields))
            if text:
                by_vid[int(vid)] = text
        if not by_vid:
            raise SimqaError(f"index {index} holds no questions to use as distractors")
        ids, matrix = opened.embeddings()
        ids = np.asarray(ids)
        vids = np.fromiter(by_vid, dtype=np.int64, count=len(by_vid))
        rows = np.searchsorted(ids, vids)
        rows = np.minimum(rows, len(ids) - 1)
        stored = ids[rows] == vids
        texts = list(by_vid.values())
        # the evaluation's dense methods encode with torch: reuse only torch-made vectors
        if stored.all() and matrix.shape[0] and manifest.encoder == "torch":
            cache.preload(manifest.model, texts, np.asarray(matrix[rows], dtype=np.float32))
        unique = list(dict.fromkeys(texts))
        return Distractors(str(index), manifest.model, unique, texts_checksum(unique))
    finally:
        opened.close()
