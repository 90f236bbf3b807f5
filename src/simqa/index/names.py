"""The names a version's live records hold, for the names lever (``simqa.lexicon``).

The lever needs, per version: the vocabulary (the ``title_name`` of every live record's
title), and for a name a question mentions, the live records whose embedded text holds it
as whole words (``name_tokens``, as ``lexicon.holds_name`` says). Both follow writes at the
cost of what changed:

- ``Phrases``: one segment's rows (a base's, or one delta segment's) as token ids, with
  the positions of each token: a phrase is matched exactly, for any name (one a later
  write's title brings too), by a few array look-ups from its rarest token. A base's is
  built once per base (its ``names.npz``, written with the base, else made from its records
  at the first long question and kept while the base is loaded: every version sharing the
  base shares it); a delta's once per delta segment, from its few rows.
- ``VersionNames``: one version's view: the base's and the deltas' phrases, less the rows
  the deltas deleted or restated (a row is held by the newest segment holding it), and
  the title counts the deltas add and hide. Made once per version from the deltas alone.
- ``boost``: the lever for one question: its strong names, and per live record holding
  one, ``weight`` x the share of their idf mass it holds.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simqa.lexicon import NameLever, mentions, name_tokens, strong_names, title_name
from simqa.records import embedding_text

#: a base's name postings, written with it (older bases make them at first use)
NAMES = "names.npz"
#: the layout of ``NAMES``; another one is made anew
FORMAT = 1

_EMPTY = np.zeros(0, dtype=np.int64)
_BUILD = threading.Lock()  # one segment's phrases are made once, whichever thread asks


class Phrases:
    """Some rows' embedded texts as ``name_tokens`` ids, each row followed by a separator
    (-1), with every token's positions: which rows hold a phrase. Also each row's
    ``title_name``. Rows are in vector id order; never changed once made."""

    def __init__(
        self,
        fields: str,
        vids: np.ndarray,
        starts: np.ndarray,
        tokens: np.ndarray,
        words: list[str],
        title_ids: np.ndarray,
        titles: list[str],
        order: np.ndarray | None = None,
        offsets: np.ndarray | None = None,
    ) -> None:
        self.fields = fields
        self.vids = vids  # sorted
        self.starts = starts  # row i's tokens start at starts[i]
        self.tokens = tokens
        self.words = words
        self.word_ids = {w: i for i, w in enumerate(words)}
        self.title_ids = title_ids  # row i's title name, an index into titles (-1: none)
        self.titles = titles
        # positions of each token id: order[offsets[t]:offsets[t + 1]], ascending
        if order is None or offsets is None:
            order = np.argsort(tokens, kind="stable").astype(
                np.int32 if len(tokens) < 2**31 else np.int64
            )
            offsets = np.searchsorted(tokens[order], np.arange(len(words) + 1))
        self.order, self.offsets = order, offsets
        counts = np.bincount(title_ids[title_ids >= 0], minlength=len(titles))
        #: rows whose title gives each name
        self.title_counts = {titles[i]: int(n) for i, n in enumerate(counts.tolist()) if n}

    @classmethod
    def of_rows(cls, rows: Iterable[tuple[int, str, str]], fields: str) -> Phrases:
        """The phrases of ``(vid, title, question)`` rows, in vid order."""
        word_ids: dict[str, int] = {}
        title_index: dict[str, int] = {}
        vids: list[int] = []
        starts: list[int] = []
        tokens: list[int] = []
        title_ids: list[int] = []
        for vid, title, question in rows:
            vids.append(vid)
            starts.append(len(tokens))
            text = embedding_text(title, question, fields)
            tokens.extend(word_ids.setdefault(w, len(word_ids)) for w in name_tokens(text))
            tokens.append(-1)
            name = title_name(title)
            title_ids.append(-1 if name is None else title_index.setdefault(name, len(title_index)))
        return cls(
            fields,
            np.asarray(vids, dtype=np.int64),
            np.asarray(starts, dtype=np.int64),
            np.asarray(tokens, dtype=np.int32),
            list(word_ids),
            np.asarray(title_ids, dtype=np.int32),
            list(title_index),
        )

    def __len__(self) -> int:
        return len(self.vids)

    def holding(self, words: Sequence[str]) -> np.ndarray:
        """Sorted vector ids of the rows holding ``words`` as consecutive tokens."""
        ids = [self.word_ids.get(w) for w in words]
        if not ids or any(i is None for i in ids):
            return _EMPTY
        counts = [self.offsets[i + 1] - self.offsets[i] for i in ids]
        anchor = int(np.argmin(counts))  # the rarest token: fewest positions to check
        t = ids[anchor]
        start = self.order[self.offsets[t] : self.offsets[t + 1]].astype(np.int64) - anchor
        start = start[(start >= 0) & (start + len(ids) <= len(self.tokens))]
        for offset, token in enumerate(ids):
            if offset != anchor and len(start):
                start = start[self.tokens[start + offset] == token]
        if not len(start):
            return _EMPTY
        rows = np.unique(np.searchsorted(self.starts, start, side="right") - 1)
        return self.vids[rows]

    def title_names_of(self, vids: np.ndarray) -> list[str]:
        """The title names of those of ``vids`` that are rows here."""
        if not len(vids) or not len(self.vids):
            return []
        at = np.minimum(np.searchsorted(self.vids, vids), len(self.vids) - 1)
        rows = at[self.vids[at] == vids]
        ids = self.title_ids[rows]
        return [self.titles[i] for i in ids[ids >= 0].tolist()]

    # --- a base's file ---------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write to ``path`` (``np.savez``: no pickles)."""
        with path.open("wb") as out:
            np.savez(
                out,
                format=np.int64(FORMAT),
                fields=_text_array([self.fields]),
                vids=self.vids,
                starts=self.starts,
                tokens=self.tokens,
                words=_text_array(self.words),
                title_ids=self.title_ids,
                titles=_text_array(self.titles),
                order=self.order,
                offsets=self.offsets,
            )

    @classmethod
    def load(cls, path: Path) -> Phrases | None:
        """The phrases saved at ``path``; None when its layout is not this one's."""
        with np.load(path, allow_pickle=False) as saved:
            if int(saved["format"]) != FORMAT:
                return None
            return cls(
                _texts(saved["fields"])[0],
                saved["vids"],
                saved["starts"],
                saved["tokens"],
                _texts(saved["words"]),
                saved["title_ids"],
                _texts(saved["titles"]),
                saved["order"],
                saved["offsets"],
            )


def _text_array(texts: list[str]) -> np.ndarray:
    """Texts without line breaks (tokens, names) as one UTF-8 byte array."""
    return np.frombuffer("\n".join(texts).encode("utf-8"), dtype=np.uint8)


def _texts(data: np.ndarray) -> list[str]:
    text = data.tobytes().decode("utf-8")
    return text.split("\n") if text else []


def write_names(records: Any, fields: str, path: Path) -> None:
    """Write the name postings of a base's records (a ``RecordStore``) to ``path``."""
    Phrases.of_rows(records.iter_texts(), fields).save(path)


def base_phrases(base: Any, directory: Path, records: Any, fields: str) -> Phrases:
    """A base's phrases, made once per loaded base (``base.memo``: every version sharing the
    base shares them): its ``NAMES`` file in ``directory`` when there is one of this layout
    for these rows, else from its records (``records``, its ``RecordStore``)."""

    def make() -> Phrases:
        path = directory / NAMES
        loaded = Phrases.load(path) if path.is_file() else None
        if loaded is not None and loaded.fields == fields and len(loaded) == len(base.emb_ids):
            return loaded
        return Phrases.of_rows(records.iter_texts(), fields)

    return _once(base.memo, fields, make)


def delta_phrases(delta: Any, records: Any, fields: str) -> Phrases:
    """A delta segment's phrases, made once per loaded segment from its rows."""
    return _once(delta.memo, fields, lambda: Phrases.of_rows(records.iter_texts(), fields))


def _once(memo: dict[Any, Any], fields: str, make: Callable[[], Phrases]) -> Phrases:
    """``memo["names"]`` for these embedded fields, made by ``make`` once, whichever thread
    asks first."""
    found = memo.get("names")
    if found is None or found.fields != fields:
        with _BUILD:
            found = memo.get("names")
            if found is None or found.fields != fields:
                found = memo["names"] = make()
    return found


class VersionNames:
    """One version's names: its segments' phrases, each less the rows it must hide (deleted,
    or restated by a newer segment). ``name in view``: some live record's title gives it."""

    def __init__(self, parts: list[tuple[Phrases, np.ndarray]], count: int) -> None:
        self.parts = parts
        self.count = count  # live records: the n of idf
        self.base_counts = parts[0][0].title_counts
        change: Counter[str] = Counter()
        for i, (phrases, hidden) in enumerate(parts):
            if i:
                change.update(phrases.title_counts)
            change.subtract(phrases.title_names_of(hidden))
        self.change = {name: n for name, n in change.items() if n}

    def __contains__(self, name: object) -> bool:
        return (self.base_counts.get(name, 0) + self.change.get(name, 0)) > 0  # type: ignore[call-overload]

    def holding(self, name: str) -> np.ndarray:
        """Sorted vector ids of the live records whose embedded text holds ``name``."""
        words = name.split(" ")
        found = []
        for phrases, hidden in self.parts:
            vids = phrases.holding(words)
            if len(vids) and len(hidden):
                vids = vids[~np.isin(vids, hidden)]
            if len(vids):
                found.append(vids)
        if not found:
            return _EMPTY
        return found[0] if len(found) == 1 else np.sort(np.concatenate(found))


@dataclass
class Boost:
    """The names lever for one question: the live records holding a strong name it
    mentions (sorted vector ids) and what each adds to its rank score."""

    vids: np.ndarray
    bonus: np.ndarray
    names: dict[str, float] = field(default_factory=dict)


def boost(view: VersionNames, query: str, lever: NameLever) -> Boost | None:
    """The lever's evidence for a question (None: it does not apply, or the question
    mentions no strong name): for every live record holding one of its strong names,
    ``weight`` x the share of their idf mass it holds."""
    if not lever.applies(query):
        return None
    found = mentions(query, view)
    holders = {name: view.holding(name) for name in found}
    strong = strong_names(found, {n: len(v) for n, v in holders.items()}, view.count,
                          lever.min_idf)  # fmt: skip
    if not strong:
        return None
    vids = np.unique(np.concatenate([holders[name] for name in strong]))
    bonus = np.zeros(len(vids), dtype=np.float32)
    for name, weight in strong.items():
        bonus[np.searchsorted(vids, holders[name])] += weight
    bonus /= sum(strong.values())
    return Boost(vids, (lever.weight * bonus).astype(np.float32), strong)
