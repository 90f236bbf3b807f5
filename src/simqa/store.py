"""The consultation records, in SQLite next to the vector index.

The vector index knows only integer vector ids (``vid``); this store maps them back to
whole consultations, so a hit comes back with its title, reply, doctor and department.
A record whose embedded text changes gets a fresh vid, so a vector id never means two
different texts (which keeps HNSW tombstones simple).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from simqa.records import Consultation, Reply

_COLUMNS = (
    "id", "title", "question", "reply", "doctor", "department", "asker_sex", "asker_age",
    "ask_date", "reply_date", "tags", "url", "source", "other_replies",
)  # fmt: skip

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
    vid INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} TEXT NOT NULL DEFAULT ''" for c in _COLUMNS)},
    text_hash TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_id ON records(id);
CREATE INDEX IF NOT EXISTS records_hash ON records(text_hash);
CREATE INDEX IF NOT EXISTS records_department ON records(department COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS records_source ON records(source COLLATE NOCASE);
"""


def _to_row(record: Consultation) -> tuple[str, ...]:
    data = record.to_dict()
    data["tags"] = json.dumps(record.tags, ensure_ascii=False)
    data["other_replies"] = json.dumps(
        [asdict(r) for r in record.other_replies], ensure_ascii=False
    )
    return tuple(data[c] for c in _COLUMNS)


def _from_row(row: sqlite3.Row) -> Consultation:
    data = {c: row[c] for c in _COLUMNS}
    data["tags"] = json.loads(data["tags"] or "[]")
    data["other_replies"] = [Reply(**r) for r in json.loads(data["other_replies"] or "[]")]
    return Consultation(**data)


class RecordStore:
    """Consultations keyed by their own id and by vector id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def upsert(
        self, records: Iterable[Consultation], fields: str
    ) -> tuple[list[tuple[int, Consultation]], list[int]]:
        """Insert or update records.

        Returns (records whose text must be embedded, with their new vids; vids whose old
        vectors must leave the index). A record re-ingested with the same question text
        only has its other fields updated and embeds nothing.
        """
        to_embed: list[tuple[int, Consultation]] = []
        stale: list[int] = []
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self.db:
            for record in records:
                digest = record.content_hash(fields)
                old = self.db.execute(
                    "SELECT vid, text_hash FROM records WHERE id = ?", (record.id,)
                ).fetchone()
                if old is not None and old["text_hash"] == digest:
                    sets = ", ".join(f"{c} = ?" for c in _COLUMNS)
                    self.db.execute(
                        f"UPDATE records SET {sets} WHERE vid = ?", (*_to_row(record), old["vid"])
                    )
                    continue
                if old is not None:
                    self.db.execute("DELETE FROM records WHERE vid = ?", (old["vid"],))
                    stale.append(int(old["vid"]))
                    to_embed = [(v, r) for v, r in to_embed if v != old["vid"]]
                cursor = self.db.execute(
                    f"INSERT INTO records ({', '.join(_COLUMNS)}, text_hash) "
                    f"VALUES ({placeholders}, ?)",
                    (*_to_row(record), digest),
                )
                to_embed.append((int(cursor.lastrowid), record))
        return to_embed, stale

    def delete(self, ids: Iterable[str]) -> list[int]:
        """Delete records by id; return the vids that left."""
        vids = []
        with self.db:
            for record_id in ids:
                row = self.db.execute(
                    "SELECT vid FROM records WHERE id = ?", (record_id,)
                ).fetchone()
                if row is not None:
                    self.db.execute("DELETE FROM records WHERE vid = ?", (row["vid"],))
                    vids.append(int(row["vid"]))
        return vids

    def get(self, record_id: str) -> tuple[int, Consultation, str] | None:
        """(vid, record, text hash) for a record id, or None."""
        row = self.db.execute("SELECT * FROM records WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else (int(row["vid"]), _from_row(row), row["text_hash"])

    def fetch(self, vids: Iterable[int]) -> dict[int, tuple[Consultation, str]]:
        """Records and text hashes by vid; unknown vids are left out."""
        vids = [int(v) for v in vids]
        found: dict[int, tuple[Consultation, str]] = {}
        for start in range(0, len(vids), 900):  # SQLite's bound-parameter limit
            chunk = vids[start : start + 900]
            marks = ", ".join("?" for _ in chunk)
            for row in self.db.execute(f"SELECT * FROM records WHERE vid IN ({marks})", chunk):
                found[int(row["vid"])] = (_from_row(row), row["text_hash"])
        return found

    def vids_where(self, department: str | None = None, source: str | None = None) -> set[int]:
        """Vector ids of records matching the filters (case-insensitive)."""
        clauses, args = [], []
        if department:
            clauses.append("department = ? COLLATE NOCASE")
            args.append(department)
        if source:
            clauses.append("source = ? COLLATE NOCASE")
            args.append(source)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return {int(r[0]) for r in self.db.execute(f"SELECT vid FROM records {where}", args)}

    def iter_records(self) -> Iterator[tuple[int, Consultation]]:
        for row in self.db.execute("SELECT * FROM records ORDER BY vid"):
            yield int(row["vid"]), _from_row(row)

    def counts_by(self, column: str) -> dict[str, int]:
        """Record counts per source or department, for ``simqa info``."""
        if column not in ("source", "department"):
            raise ValueError(column)
        rows = self.db.execute(f"SELECT {column}, COUNT(*) FROM records GROUP BY 1 ORDER BY 2 DESC")
        return {r[0] or "(none)": int(r[1]) for r in rows}

    def copy_to(self, path: Path) -> RecordStore:
        """A consistent copy of this database at ``path`` (SQLite's online backup)."""
        target = sqlite3.connect(str(path))
        with target:
            self.db.backup(target)
        target.close()
        return RecordStore(path)
