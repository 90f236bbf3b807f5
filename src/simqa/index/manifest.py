"""The manifest: what an index folder holds and how it was made.

Saved as ``manifest.json`` beside the vector index and the records, so ``simqa info``
can show it, opening can refuse an index built with another model, and damaged files
are caught by their checksums before faiss or SQLite read them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simqa.errors import IndexCorrupt, ModelMismatch
from simqa.files import sha256_file

#: 2: records carry ask_iso and a tags table (the date and tag filters)
#: 3: a version is a base plus delta segments (``segments``, ``next_vid``, ``base``)
FORMAT_VERSION = 3
#: the versions this simqa reads: a version-2 index is a base without delta segments
READS = (2, 3)
FILENAME = "manifest.json"
#: each file's {"bytes", "sha256"}, by name
Files = dict[str, dict[str, Any]]
#: the first bytes of each kind of index file, checked on every open (cheap, unlike checksums)
_MAGIC = {".npy": b"\x93NUMPY", ".sqlite": b"SQLite format 3\x00"}


@dataclass
class Manifest:
    model: str
    dim: int
    count: int
    vector_index: dict[str, Any]
    embed_fields: str = "title+question"
    #: how the vectors were computed: "onnx" (int8) or "torch"; queries use the same
    encoder: str = "torch"
    #: how that encoder computes vectors (the onnx export recipe); "" when not recorded
    encoder_recipe: str = ""
    metric: str = "inner_product"
    index_reason: str = ""
    #: hits scoring below it are left out by default ("nothing similar is known")
    min_score: float | None = None
    #: ranking by cosine minus weight x neighbour density ({"weight", "k"}; empty: off)
    hub_penalty: dict[str, Any] = field(default_factory=dict)
    recall: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
    sources: dict[str, int] = field(default_factory=dict)
    files: Files = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    simqa_version: str = ""
    #: the delta segment files on top of the base, oldest first (``index.segment``)
    segments: list[str] = field(default_factory=list)
    #: the vector id the next new record gets (0: not recorded, read from the base)
    next_vid: int = 0
    #: the base's own figures: {"records", "created"} (empty: a version-2 index)
    base: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: Path, reuse: Iterable[tuple[Path, Files]] = ()) -> None:
        """Record each file's size and checksum, then write the manifest itself. A file that
        is the very file (same inode) of one listed in ``reuse`` (a folder and its verified
        entries) keeps that checksum instead of being read again: a write checksums only
        the files it wrote."""
        self.files = files_of(directory, reuse)
        write_json(directory / FILENAME, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / FILENAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise IndexCorrupt(f"{directory} has no {FILENAME}") from None
        except (OSError, ValueError, UnicodeDecodeError):
            raise IndexCorrupt(f"{path} is unreadable or not valid JSON") from None
        if not isinstance(data, dict) or data.get("format_version") not in READS:
            version = data.get("format_version") if isinstance(data, dict) else None
            raise IndexCorrupt(
                f"{path}: index format version {version!r}, this simqa reads "
                f"{' and '.join(map(str, READS))}; "
                "rebuild the index with simqa build"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise IndexCorrupt(f"{path} has unexpected fields ({exc})") from None

    def check_encoder(self, encoder: Any) -> None:
        """Refuse to mix vectors: the same kind of encoder must compute them the same way."""
        if encoder.dim != self.dim:
            raise ModelMismatch(
                f"model {self.model} gives {encoder.dim}-dimensional vectors, "
                f"the index holds {self.dim}-dimensional ones"
            )
        if (
            self.encoder_recipe
            and encoder.kind == self.encoder
            and (getattr(encoder, "recipe", "") != self.encoder_recipe)
        ):
            raise ModelMismatch(
                f"the index's vectors come from encoder {self.encoder_recipe}, this simqa "
                f"computes {encoder.recipe}; rebuild the index with simqa build"
            )

    def verify(self, directory: Path, checksums: bool = True) -> None:
        """Raise IndexCorrupt if a file is missing, truncated, has a damaged header or
        (with checksums, which read every byte) is altered anywhere."""
        for name, expected in self.files.items():
            path = directory / name
            if not path.exists():
                raise IndexCorrupt(f"index file {path} is missing")
            size = path.stat().st_size
            if size != expected["bytes"]:
                raise IndexCorrupt(
                    f"index file {path} is {size:,} bytes, expected {expected['bytes']:,} "
                    "(truncated or modified)"
                )
            magic = _MAGIC.get(path.suffix)
            if magic:
                with path.open("rb") as handle:
                    if handle.read(len(magic)) != magic:
                        raise IndexCorrupt(f"index file {path} has a damaged header")
            if checksums and sha256_file(path) != expected["sha256"]:
                raise IndexCorrupt(f"index file {path} fails its checksum (corrupted)")


def files_of(directory: Path, reuse: Iterable[tuple[Path, Files]] = ()) -> Files:
    """{"bytes", "sha256"} of every file in ``directory`` but the manifest (see ``save``)."""
    sources = list(reuse)
    files: Files = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name == FILENAME:
            continue
        for folder, known in sources:
            entry = known.get(path.name)
            if entry is not None and _same_file(path, folder / path.name):
                files[path.name] = dict(entry)
                break
        else:
            files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return files


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
