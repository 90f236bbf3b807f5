"""Pick, create and load vector backends by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simqa.errors import SimqaError
from simqa.vectors.base import VectorIndex
from simqa.vectors.flat import FlatIndex

BACKENDS: dict[str, type[VectorIndex]] = {FlatIndex.kind: FlatIndex}


def create(kind: str, dim: int) -> VectorIndex:
    """A new empty index of the named kind."""
    try:
        backend = BACKENDS[kind]
    except KeyError:
        choices = ", ".join(BACKENDS)
        raise SimqaError(f"unknown index type {kind!r}; choose one of {choices}") from None
    return backend(dim)


def load(directory: Path, config: dict[str, Any]) -> VectorIndex:
    """Load the index stored in ``directory`` as described by its manifest ``config``."""
    return create_class(config["kind"]).load(directory, config)


def create_class(kind: str) -> type[VectorIndex]:
    if kind not in BACKENDS:
        raise SimqaError(f"index type {kind!r} is not known to this version of simqa")
    return BACKENDS[kind]


def choose(n_vectors: int, dim: int) -> tuple[str, str]:
    """The backend for a corpus of this size, and why (shown by ``simqa info``)."""
    return "flat", f"{n_vectors} vectors: exact search is fast enough and needs no tuning"
