"""An index folder on disk: its published versions, the CURRENT pointer, the locks.

::

    NAME/CURRENT          the live version's folder name, replaced atomically
    NAME/v000007/         a published version: never modified, opened read-only
    NAME/.lock            held by the one writer at work (``filelock``; freed if it dies)
    NAME/.compact.lock    held by the one compaction at work
    NAME/.staging-*       a version being written; left behind only by a killed writer
    NAME/.compacting-*    a compaction's new base being written (outside the writer lock)
    NAME/.trash-*         a superseded version being removed

A writer builds a new version in a staging folder, fsyncs what is new in it, renames it
into place and only then points CURRENT at it, so readers see either the old version or
the new one, never a half-written one. Files a version shares with the one before (the
base, earlier delta segments) are hard links, written and synced once.

A reader holds a shared ``flock`` on the folder of each version it has open
(``open_version``); a superseded version is removed by whoever next finds it unheld
(``sweep``: writers after each publish, readers when they let a version go), so versions
go as soon as no reader can still hold them, whether or not anyone writes again. A reader
that read CURRENT just before its version was removed notices (the folder is gone or is
not the one it named) and reads CURRENT again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from simqa.errors import IndexBusy, IndexCorrupt, IndexMissing, SimqaError

CURRENT = "CURRENT"
LOCK = ".lock"
COMPACT_LOCK = ".compact.lock"
STAGING_PREFIX = ".staging-"
COMPACTING_PREFIX = ".compacting-"
TRASH_PREFIX = ".trash-"
#: encoders adapted for this index (``simqa adapt``), one folder each, shared by its versions
MODELS = "models"
#: how old a staging folder of ``simqa adapt``'s models must be before it counts as left over
GRACE_SECONDS = 30.0
#: how long a writer waits for another writer by default
DEFAULT_WAIT_SECONDS = 300.0
_VERSION = re.compile(r"v\d{6}")
#: a reader retries this often when CURRENT moves while it opens a version
_OPEN_ATTEMPTS = 50


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


def current_name(root: Path) -> str:
    """The version name CURRENT holds, or IndexMissing / IndexCorrupt saying what is wrong."""
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
    if not _VERSION.fullmatch(name):
        raise IndexCorrupt(f"{pointer} names a missing version {name!r}")
    return name


def current_version(root: Path) -> Path:
    """The folder CURRENT names, or IndexMissing / IndexCorrupt saying what is wrong."""
    name = current_name(root)
    version_dir = root / name
    if not version_dir.is_dir():
        raise IndexCorrupt(f"{root / CURRENT} names a missing version {name!r}")
    return version_dir


def open_version(root: Path) -> tuple[Path, int]:
    """The live version's folder and a descriptor holding a shared lock on it: while the
    descriptor is open no ``sweep`` removes the folder. Close it with ``release``."""
    seen: str | None = None
    for _ in range(_OPEN_ATTEMPTS):
        name = current_name(root)
        version_dir = root / name
        try:
            fd = os.open(version_dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if name == seen:  # CURRENT did not move: the folder is really missing
                raise IndexCorrupt(f"{root / CURRENT} names a missing version {name!r}") from None
            seen = name
            continue
        fcntl.flock(fd, fcntl.LOCK_SH)  # a sweep holds it exclusively only while renaming
        try:
            same = os.stat(version_dir).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return version_dir, fd
        os.close(fd)  # removed between reading CURRENT and locking: read CURRENT again
        seen = name
    raise IndexCorrupt(f"{root}: CURRENT kept naming removed versions; is a writer looping?")


def release(fd: int) -> None:
    """Let go of a version opened with ``open_version``."""
    with contextlib.suppress(OSError):
        os.close(fd)


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
def compaction_lock(root: Path, wait: float = DEFAULT_WAIT_SECONDS) -> Iterator[bool]:
    """Hold the index's compaction lock (one compaction at a time); yields False, holding
    nothing, when another compaction still has it after ``wait`` seconds (0: do not wait)."""
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / COMPACT_LOCK), timeout=wait)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def compaction_running(root: Path) -> bool:
    """True while a process holds the compaction lock (a dead one's is freed by the kernel)."""
    with compaction_lock(root, 0) as held:
        return not held


@contextmanager
def staged_version(root: Path, prefix: str = STAGING_PREFIX) -> Iterator[Path]:
    """A staging folder to write the next version into: published when the block ends,
    removed if it raises (or the writer is interrupted). Use with the writer lock held."""
    staging = root / f"{prefix}{uuid.uuid4().hex}"
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
        p.name in (CURRENT, LOCK, COMPACT_LOCK, MODELS)
        or p.name.startswith((STAGING_PREFIX, COMPACTING_PREFIX, TRASH_PREFIX, f".{CURRENT}."))
        or _VERSION.fullmatch(p.name)
        for p in root.iterdir()
    )


def publish(root: Path, staging: Path) -> Path:
    """Move a finished version into place and point CURRENT at it, durably and atomically.

    Files written for this version are synced; hard links to files of earlier versions
    (synced when those were published) need only their folder entries synced. Call with
    the writer lock held.
    """
    numbers = [int(p.name[1:]) for p in _versions(root)]
    final = root / f"v{(max(numbers) + 1 if numbers else 1):06d}"
    for path in staging.iterdir():
        if path.is_file() and path.stat().st_nlink == 1:
            fsync_file(path)
    fsync_dir(staging)
    os.rename(staging, final)
    fsync_dir(root)
    pointer_tmp = root / f".{CURRENT}.{uuid.uuid4().hex}"
    with pointer_tmp.open("w") as handle:
        handle.write(final.name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pointer_tmp, root / CURRENT)
    fsync_dir(root)
    return final


def clean(root: Path) -> None:
    """Remove what killed writers and compactions left, then superseded versions no reader
    holds. Call with the writer lock held (versions renamed into place by a writer killed
    before it wrote CURRENT are removed, which only a writer may do)."""
    entries = list(root.iterdir())
    compacting = any(p.name.startswith(COMPACTING_PREFIX) for p in entries) and (
        compaction_running(root)
    )
    for p in entries:
        leftover = p.name.startswith((STAGING_PREFIX, f".{CURRENT}.", TRASH_PREFIX))
        if leftover or (p.name.startswith(COMPACTING_PREFIX) and not compacting):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    try:
        live = current_name(root)
    except SimqaError:
        return  # no usable CURRENT: keep every version; a build will replace it
    for p in _versions(root):
        if p.name > live:  # renamed into place, never published
            shutil.rmtree(p, ignore_errors=True)
    sweep(root)


def sweep(root: Path) -> list[str]:
    """Remove every superseded version no reader holds; returns their names.

    Safe without the writer lock and from any process: a version is only removed under an
    exclusive ``flock`` (readers hold shared ones), after a rename that readers notice.
    Errors (another sweep got there first, a read-only folder) are ignored.
    """
    removed: list[str] = []
    try:
        live = current_name(root)
        versions = [p for p in _versions(root) if p.name < live]
    except (SimqaError, OSError):
        return removed
    for version_dir in versions:
        try:
            fd = os.open(version_dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            trash = root / f"{TRASH_PREFIX}{version_dir.name}-{uuid.uuid4().hex[:8]}"
            os.rename(version_dir, trash)
        except OSError:  # held by a reader, already gone, or not ours to remove
            continue
        finally:
            os.close(fd)
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(version_dir.name)
    return removed


def versions(root: Path) -> list[str]:
    """The names of the version folders present, oldest first."""
    return sorted(p.name for p in _versions(root))


def _versions(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)]


def fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
