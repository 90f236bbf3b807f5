"""An index folder on disk: its published versions, the CURRENT pointer, the writer lock.

::

    NAME/CURRENT        the live version's folder name, replaced atomically
    NAME/v000007/       a published version: never modified, opened read-only
    NAME/.lock          held by the one writer at work (``filelock``; freed if it dies)
    NAME/.staging-*     a version being written; left behind only by a killed writer

A writer builds a new version in a staging folder, fsyncs it, renames it into place and
only then points CURRENT at it, so readers see either the old version or the new one,
never a half-written one. Superseded versions stay on disk for ``GRACE_SECONDS``, so a
reader that read CURRENT just before a publish can still open what it named; the next
writer removes them, and whatever a killed writer left.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

from filelock import FileLock, Timeout

from simqa.errors import IndexBusy, IndexCorrupt, IndexMissing, SimqaError

CURRENT = "CURRENT"
LOCK = ".lock"
STAGING_PREFIX = ".staging-"
#: encoders adapted for this index (``simqa adapt``), one folder each, shared by its versions
MODELS = "models"
#: superseded versions stay this long for readers that are opening them
GRACE_SECONDS = 30.0
#: how long a writer waits for another writer by default
DEFAULT_WAIT_SECONDS = 300.0
_VERSION = re.compile(r"v\d{6}")


def home() -> Path:
    """Where index names are resolved: ``$SIMQA_HOME`` or ``./indexes``."""
    return Path(os.environ.get("SIMQA_HOME", "indexes"))


def index_path(index: str | Path) -> Path:
    """An index name means a folder under ``home()``; anything path-like is a path."""
    text = str(index)
    if isinstance(index, Path) or "/" in text or text.startswith(".") or os.sep in text:
        return Path(index)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
        raise SimqaError(f"bad index name {text!r}: use letters, digits, '-', '_' or a path")
    return home() / text


def current_version(root: Path) -> Path:
    """The folder CURRENT names, or IndexMissing / IndexCorrupt saying what is wrong."""
    pointer = root / CURRENT
    if not root.is_dir():
        raise IndexMissing(f"no index at {root} (build one with: simqa build SOURCE --index NAME)")
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        raise IndexMissing(
            f"{root} is not a simqa index (no {CURRENT} file; an interrupted first build "
            "leaves none: build again)"
        ) from None
    except (OSError, UnicodeDecodeError):
        raise IndexCorrupt(f"{pointer} is unreadable") from None
    version_dir = root / name
    if not _VERSION.fullmatch(name) or not version_dir.is_dir():
        raise IndexCorrupt(f"{pointer} names a missing version {name!r}")
    return version_dir


def model_location(root: Path, model: str) -> str:
    """What to load for a manifest's ``model``: an encoder adapted for this index is recorded
    relative to it (``models/<hash>``), so the index folder can be moved or copied whole."""
    return str(root / model) if model.startswith(f"{MODELS}/") else model


def pointer_stamp(root: Path) -> tuple[int, int] | None:
    """(inode, mtime) of CURRENT: changes whenever a version is published (cheap to check)."""
    try:
        st = os.stat(root / CURRENT)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


@contextmanager
def writer_lock(root: Path, wait: float = DEFAULT_WAIT_SECONDS) -> Iterator[None]:
    """Hold the index's writer lock; a second writer waits up to ``wait`` seconds.

    The lock is an OS file lock, released by the kernel if its holder dies, so a killed
    writer never leaves the index locked. Holding it, the writer first clears what a
    killed writer may have left.
    """
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK), timeout=wait)
    try:
        lock.acquire()
    except Timeout:
        raise IndexBusy(
            f"another writer has held {root} for {wait:g} s; gave up "
            "(try again, or wait longer with --wait SECONDS)"
        ) from None
    try:
        clean(root)
        yield
    finally:
        lock.release()


@contextmanager
def staged_version(root: Path) -> Iterator[Path]:
    """A staging folder to write the next version into: published when the block ends,
    removed if it raises (or the writer is interrupted). Use with the writer lock held."""
    staging = root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        yield staging
        publish(root, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def is_empty_or_ours(root: Path) -> bool:
    """True for a folder a build may write into: missing, empty, or only simqa's files."""
    if not root.exists():
        return True
    return all(
        p.name in (CURRENT, LOCK, MODELS)
        or p.name.startswith((STAGING_PREFIX, f".{CURRENT}."))
        or _VERSION.fullmatch(p.name)
        for p in root.iterdir()
    )


def publish(root: Path, staging: Path) -> Path:
    """Move a finished version into place and point CURRENT at it, durably and atomically.

    Call with the writer lock held.
    """
    numbers = [int(p.name[1:]) for p in _versions(root)]
    final = root / f"v{(max(numbers) + 1 if numbers else 1):06d}"
    for f in staging.iterdir():
        with f.open("rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(staging)
    os.rename(staging, final)
    _fsync_dir(root)
    pointer_tmp = root / f".{CURRENT}.{uuid.uuid4().hex}"
    with pointer_tmp.open("w") as handle:
        handle.write(final.name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pointer_tmp, root / CURRENT)
    _fsync_dir(root)
    return final


def clean(root: Path, grace: float = GRACE_SECONDS) -> None:
    """Remove a killed writer's leftovers and versions superseded more than ``grace`` ago.

    Call with the writer lock held. A version is superseded when a newer one was published;
    its successor's folder time says when. Unpublished version folders (renamed by a writer
    killed before it wrote CURRENT) are removed at once.
    """
    for p in root.iterdir():
        if p.name.startswith((STAGING_PREFIX, f".{CURRENT}.")):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    try:
        live = current_version(root).name
    except SimqaError:
        return  # no usable CURRENT: keep every version; a build will replace it
    versions = sorted(p.name for p in _versions(root))
    now = time.time()
    for older, newer in pairwise(versions):
        if older == live:
            continue
        if older > live:  # renamed into place, never published
            shutil.rmtree(root / older, ignore_errors=True)
            continue
        if now - (root / newer).stat().st_mtime > grace:
            shutil.rmtree(root / older, ignore_errors=True)
    if versions and versions[-1] > live:
        shutil.rmtree(root / versions[-1], ignore_errors=True)


def _versions(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
