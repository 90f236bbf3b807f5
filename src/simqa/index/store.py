"""The consultation records, in SQLite next to the vector index.

The vector index knows only integer vector ids (``vid``); this store maps them back to
whole consultations, so a hit comes back with its title, reply, doctor and department.
A record whose embedded text changes gets a fresh vid, so a vector id never means two
different texts (which keeps HNSW tombstones simple).

A published database never changes again, so readers open it read-only and ``immutable``
(no locking, no journal look-ups), one connection per reading thread: threads never queue
on each other's queries. Filters read two derived columns kept by ``upsert``: ``ask_iso``
(the ask date as ISO text, the original kept in ``ask_date``) and the ``tags`` table (one
row per topic).

The same schema serves an index's base (``records.sqlite``) and its delta segments, whose
rows carry the vector ids the writer gave them (``insert_rows``).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from urllib.parse import quote

import numpy as np

from simqa.errors import BadQuery, IndexCorrupt
from simqa.records import Consultation, Reply, iso_date

_COLUMNS = (
    "id", "title", "question", "reply", "doctor", "department", "asker_sex", "asker_age",
    "ask_date", "reply_date", "tags", "url", "source", "other_replies",
)  # fmt: skip

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
    vid INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} TEXT NOT NULL DEFAULT ''" for c in _COLUMNS)},
    text_hash TEXT NOT NULL,
    ask_iso TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS tags (
    vid INTEGER NOT NULL,
    tag TEXT NOT NULL COLLATE NOCASE
);
CREATE INDEX IF NOT EXISTS tags_tag ON tags(tag COLLATE NOCASE, vid);
CREATE INDEX IF NOT EXISTS tags_vid ON tags(vid);
CREATE INDEX IF NOT EXISTS records_ask ON records(ask_iso);
CREATE UNIQUE INDEX IF NOT EXISTS records_id ON records(id);
CREATE INDEX IF NOT EXISTS records_hash ON records(text_hash);
CREATE INDEX IF NOT EXISTS records_department ON records(department COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS records_source ON records(source COLLATE NOCASE);
"""


#: a page's Related FAQ tags carry their department: "Leg(Neurology)"
_TOPIC_DEPARTMENT = re.compile(r"\s*\([^()]*\)$")


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


class Filter:
    """What a search may be narrowed to; every field optional, all given ones must hold."""

    def __init__(
        self,
        department: str | None = None,
        source: str | None = None,
        tag: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> None:
        self.department, self.source, self.tag = department, source, tag
        self.since = _date_bound(since, "since")
        self.until = _date_bound(until, "until")

    def __bool__(self) -> bool:
        return any((self.department, self.source, self.tag, self.since, self.until))

    def where(self) -> tuple[str, list[str]]:
        clauses, args = [], []
        if self.department:
            clauses.append("department = ? COLLATE NOCASE")
            args.append(self.department)
        if self.source:
            clauses.append("source = ? COLLATE NOCASE")
            args.append(self.source)
        if self.tag:
            clauses.append("vid IN (SELECT vid FROM tags WHERE tag = ? COLLATE NOCASE)")
            args.append(self.tag)
        if self.since:  # compare as many characters as the bound has: 2013, 2013-02, ...
            clauses.append(f"ask_iso != '' AND substr(ask_iso, 1, {len(self.since)}) >= ?")
            args.append(self.since)
        if self.until:
            clauses.append(f"ask_iso != '' AND substr(ask_iso, 1, {len(self.until)}) <= ?")
            args.append(self.until)
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


def _date_bound(value: str | None, name: str) -> str | None:
    if value is None or not str(value).strip():
        return None
    iso = iso_date(str(value))
    if not iso:
        raise BadQuery(f"{name} must be a date like 2013-02-10, 2013-02 or 2013, got {value!r}")
    return iso


class RecordStore:
    """Consultations keyed by their own id and by vector id.

    ``readonly`` opens a published database: immutable, a connection of its own for each
    thread that reads it (opened at its first query, closed with the store). A writable
    store is a file in a staging folder: no journal and no syncs of its own (publishing
    syncs it; a failed write throws the folder away).
    """

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        if readonly:
            if not path.is_file():
                raise IndexCorrupt(f"index file {path} is missing")
            self._uri = f"file:{quote(os.path.abspath(path))}?mode=ro&immutable=1"
        else:
            self.db = sqlite3.connect(str(path), check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=OFF")
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a published database is read by many threads at once)."""
        if not self.readonly:
            return self.db
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            db.row_factory = sqlite3.Row
            self._local.db = db
            with self._opened_lock:
                self._opened.append(db)
        return db

    def close(self) -> None:
        if not self.readonly:
            self.db.close()
            return
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for db in opened:
            db.close()
        self._local = threading.local()

    def _all(self, sql: str, args: Iterable = ()) -> list[sqlite3.Row]:
        return self._connection().execute(sql, tuple(args)).fetchall()

    def __len__(self) -> int:
        return int(self._all("SELECT COUNT(*) FROM records")[0][0])

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
                        f"UPDATE records SET {sets}, ask_iso = ? WHERE vid = ?",
                        (*_to_row(record), iso_date(record.ask_date), old["vid"]),
                    )
                    self._set_tags(old["vid"], record.tags)
                    continue
                if old is not None:
                    self._delete_vid(old["vid"])
                    stale.append(int(old["vid"]))
                    to_embed = [(v, r) for v, r in to_embed if v != old["vid"]]
                cursor = self.db.execute(
                    f"INSERT INTO records ({', '.join(_COLUMNS)}, text_hash, ask_iso) "
                    f"VALUES ({placeholders}, ?, ?)",
                    (*_to_row(record), digest, iso_date(record.ask_date)),
                )
                self._set_tags(int(cursor.lastrowid), record.tags)
                to_embed.append((int(cursor.lastrowid), record))
        return to_embed, stale

    def _set_tags(self, vid: int, tags: list[str]) -> None:
        self.db.execute("DELETE FROM tags WHERE vid = ?", (vid,))
        topics = (_TOPIC_DEPARTMENT.sub("", t).strip() for t in tags)  # Leg(Neurology) -> Leg
        unique = {t.casefold(): t for t in topics if t}
        self.db.executemany(
            "INSERT INTO tags (vid, tag) VALUES (?, ?)", [(vid, t) for t in unique.values()]
        )

    def _delete_vid(self, vid: int) -> None:
        self.db.execute("DELETE FROM records WHERE vid = ?", (vid,))
        self.db.execute("DELETE FROM tags WHERE vid = ?", (vid,))

    def delete(self, ids: Iterable[str]) -> list[int]:
        """Delete records by id; return the vids that left."""
        vids = []
        with self.db:
            for record_id in ids:
                row = self.db.execute(
                    "SELECT vid FROM records WHERE id = ?", (record_id,)
                ).fetchone()
                if row is not None:
                    self._delete_vid(row["vid"])
                    vids.append(int(row["vid"]))
        return vids

    def get(self, record_id: str) -> tuple[int, Consultation, str] | None:
        """(vid, record, text hash) for a record id, or None."""
        rows = self._all("SELECT * FROM records WHERE id = ?", (record_id,))
        return None if not rows else (int(rows[0]["vid"]), _from_row(rows[0]), rows[0]["text_hash"])

    def fetch(self, vids: Iterable[int]) -> dict[int, tuple[Consultation, str]]:
        """Records and text hashes by vid; unknown vids are left out."""
        vids = [int(v) for v in vids]
        found: dict[int, tuple[Consultation, str]] = {}
        if len(vids) > 900:  # past SQLite's bound-parameter limit: one JSON array
            rows = self._all(f"SELECT * FROM records WHERE vid IN {_JSON_SET}", [json.dumps(vids)])
        else:
            marks = ", ".join("?" for _ in vids)
            rows = self._all(f"SELECT * FROM records WHERE vid IN ({marks})", vids) if vids else []
        for row in rows:
            found[int(row["vid"])] = (_from_row(row), row["text_hash"])
        return found

    def get_many(self, record_ids: Iterable[str]) -> dict[str, tuple[int, Consultation, str]]:
        """``get`` of many ids in one query: (vid, record, text hash) by id, found ones only."""
        ids = list(dict.fromkeys(str(i) for i in record_ids))
        if not ids:
            return {}
        rows = self._all(f"SELECT * FROM records WHERE id IN {_JSON_SET}", [json.dumps(ids)])
        return {row["id"]: (int(row["vid"]), _from_row(row), row["text_hash"]) for row in rows}

    def next_vid(self) -> int:
        """The vector id after every one this database ever gave (AUTOINCREMENT's counter)."""
        seq = self._all("SELECT seq FROM sqlite_sequence WHERE name = 'records'")
        top = self._all("SELECT MAX(vid) FROM records")
        return max(int(seq[0][0]) if seq else 0, int(top[0][0] or 0)) + 1

    def row_vids(self) -> np.ndarray:
        """Every row's vector id, sorted."""
        rows = self._all("SELECT vid FROM records ORDER BY vid")
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def insert_rows(self, rows: Iterable[tuple[int, Consultation, str]]) -> None:
        """Write records under the vector ids given (a delta segment's rows)."""
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self.db:
            for vid, record, digest in rows:
                self.db.execute(
                    f"INSERT INTO records (vid, {', '.join(_COLUMNS)}, text_hash, ask_iso) "
                    f"VALUES (?, {placeholders}, ?, ?)",
                    (vid, *_to_row(record), digest, iso_date(record.ask_date)),
                )
                self._set_tags(vid, record.tags)

    def vids_where(self, where: Filter) -> np.ndarray:
        """Sorted vector ids of the records a filter keeps (text compared case-insensitively)."""
        sql, args = where.where()
        rows = self._all(f"SELECT vid FROM records {sql} ORDER BY vid", args)
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def tag_counts(self, only: np.ndarray | None = None) -> dict[str, int]:
        """Records per topic (casefolded), for choosing Related FAQ topics; ``only``: among
        those vector ids alone."""
        where, args = _only(only)
        rows = self._all(
            f"SELECT lower(tag), COUNT(DISTINCT vid) FROM tags {where} GROUP BY lower(tag)", args
        )
        return {r[0]: int(r[1]) for r in rows}

    def iter_records(self) -> Iterator[tuple[int, Consultation]]:
        last = -1
        while True:  # pages, so the shared connection's lock is never held for long
            rows = self._all("SELECT * FROM records WHERE vid > ? ORDER BY vid LIMIT 2000", (last,))
            if not rows:
                return
            for row in rows:
                yield int(row["vid"]), _from_row(row)
            last = int(rows[-1]["vid"])

    def iter_texts(self) -> Iterator[tuple[int, str, str]]:
        """(vid, title, question) of every row, in vid order: what name matching reads,
        without decoding whole records."""
        last = -1
        while True:
            rows = self._all(
                "SELECT vid, title, question FROM records WHERE vid > ? ORDER BY vid LIMIT 20000",
                (last,),
            )
            if not rows:
                return
            for row in rows:
                yield int(row[0]), row[1], row[2]
            last = int(rows[-1][0])

    def counts_by(self, column: str, only: np.ndarray | None = None) -> dict[str, int]:
        """Record counts per source or department, for ``simqa info``; ``only``: among
        those vector ids alone."""
        if column not in ("source", "department"):
            raise ValueError(column)
        where, args = _only(only)
        rows = self._all(
            f"SELECT {column}, COUNT(*) FROM records {where} GROUP BY 1 ORDER BY 2 DESC", args
        )
        return {r[0] or "(none)": int(r[1]) for r in rows}

    def copy_to(self, path: Path) -> RecordStore:
        """A writable copy of this database at ``path`` (SQLite's online backup)."""
        target = sqlite3.connect(str(path))
        target.execute("PRAGMA synchronous=OFF")
        with target:
            self._connection().backup(target)
        target.close()
        return RecordStore(path)


#: ``vid IN`` / ``id IN`` a JSON array bound as one parameter (no bound-parameter limit)
_JSON_SET = "(SELECT value FROM json_each(?))"


def _only(vids: np.ndarray | None) -> tuple[str, list[str]]:
    if vids is None:
        return "", []
    return f"WHERE vid IN {_JSON_SET}", [json.dumps(np.asarray(vids, dtype=np.int64).tolist())]
