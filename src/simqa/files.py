"""Files simqa checks and derives: one checksum helper, one folder for derived files.

Checksums name what a manifest, an evaluation row or a training record was made from;
the cache folder keeps what can always be made again (ONNX exports, evaluation vectors).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_tree(path: Path) -> str:
    """``sha256_file`` of a file, or of a folder's files (relative names and contents)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for member in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(member.relative_to(path)).encode() + b"\0")
        digest.update(sha256_file(member).encode())
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where derived files go: ``$SIMQA_CACHE``, else ``$XDG_CACHE_HOME/simqa``, else
    ``~/.cache/simqa`` (``~`` expanded in either variable)."""
    env = os.environ.get("SIMQA_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "simqa"
