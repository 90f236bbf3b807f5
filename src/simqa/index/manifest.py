"""The manifest: what an index folder holds and how it was made.

Saved as ``manifest.json`` beside the vector index and the records, so ``simqa info``
can show it, opening can refuse an index built with another model, and damaged files
are caught by their checksums before faiss or SQLite read them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simqa.errors import IndexCorrupt, ModelMismatch
from simqa.files import sha256_file

#: 2: records carry ask_iso and a tags table (the date and tag filters)
FORMAT_VERSION = 2
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

    def save(
        self, directory: Path, base: Path | None = None, base_files: Files | None = None
    ) -> None:
        """Record each file's size and checksum, then write the manifest itself. A file
        hard-linked from the version ``base`` (whose ``base_files`` were verified) keeps
        its recorded checksum instead of being read again."""
        self.files = {}
        for path in sorted(directory.iterdir()):
            if not path.is_file() or path.name == FILENAME:
                continue
            known = (base_files or {}).get(path.name)
            if known is not None and base is not None and _same_file(path, base / path.name):
                self.files[path.name] = dict(known)
            else:
                self.files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        (directory / FILENAME).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / FILENAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise IndexCorrupt(f"{directory} has no {FILENAME}") from None
        except (OSError, ValueError, UnicodeDecodeError):
            raise IndexCorrupt(f"{path} is unreadable or not valid JSON") from None
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            version = data.get("format_version") if isinstance(data, dict) else None
            raise IndexCorrupt(
                f"{path}: index format version {version!r}, this simqa reads {FORMAT_VERSION}; "
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


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


