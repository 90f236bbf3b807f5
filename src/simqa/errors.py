"""One exception type for every problem a user can cause or fix.

The CLI turns a ``SimqaError`` into a one-line message and a non-zero exit; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SimqaError(Exception):
    """A problem with the user's input, files or index, described in one short line."""


class IndexMissing(SimqaError):
    """No index where one was named."""


class IndexCorrupt(SimqaError):
    """An index exists but its files are damaged or inconsistent."""


class ModelMismatch(SimqaError):
    """The index was built with another model or dimension than the one asked for."""


class BadQuery(SimqaError):
    """A query that cannot be answered: empty, too long, or k out of range."""


class BadRecord(SimqaError):
    """A malformed consultation record (raised with --strict, otherwise counted and skipped)."""


class UnknownConsultation(SimqaError):
    """No consultation with that id in the index."""


class IndexBusy(SimqaError):
    """Another writer held the index's lock for longer than this writer would wait."""
