"""What an ingest run loaded and what it had to skip, so nothing is dropped silently."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Problem:
    """One malformed record (or file) with where it is, so the user can fix the source.

    ``line`` is a line number for line-based formats and a record number (1-based) for
    JSON and XML, as ``unit`` says; ``None`` means the file as a whole. ``skipped`` is
    False for a warning about a record that was still loaded (e.g. a renamed duplicate id).
    """

    file: str
    line: int | None
    message: str
    unit: str = "line"
    skipped: bool = True

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}, {self.unit} {self.line}"
        return f"{where}: {self.message}"


@dataclass
class IngestReport:
    """Records loaded per source file, and every problem met on the way."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    """Files met while walking a directory that are no known format (e.g. README.md)."""

    @property
    def loaded(self) -> int:
        return sum(self.counts.values())

    @property
    def skipped(self) -> int:
        return sum(1 for p in self.problems if p.skipped)

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if not p.skipped)

    def summary(self) -> str:
        """One line for the end of a run, e.g. ``loaded 2,526 records from 3 files; ...``."""
        files = len(self.counts)
        text = f"loaded {self.loaded:,} record{_s(self.loaded)} from {files:,} file{_s(files)}"
        if self.skipped:
            text += f"; skipped {self.skipped:,} malformed (see above)"
        if self.warnings:
            text += f"; {self.warnings:,} warning{_s(self.warnings)} (see above)"
        if self.ignored:
            text += f"; ignored {len(self.ignored):,} other file{_s(len(self.ignored))}"
        return text


def _s(n: int) -> str:
    return "" if n == 1 else "s"
