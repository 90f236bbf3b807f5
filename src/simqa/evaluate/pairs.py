"""Read labelled question pairs from the formats simqa evaluates on, into one ``PairSet``.

Every reader yields the same shape: queries, each with the texts that should be found
(positives) and the related-but-different texts that should not (hard negatives), the
labelled pairs exactly as the file gives them (for threshold accuracy), and the
candidate pool, which is every distinct question of the set. Texts are normalised with
``records.normalise`` so that equal questions compare, embed and deduplicate equally.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from simqa.errors import SimqaError
from simqa.files import sha256_file
from simqa.records import normalise

FORMATS = ("mqp", "rqe", "meqsum", "jsonl")


@dataclass(frozen=True)
class EvalQuery:
    """One query with the texts that should rank high and its hard negatives."""

    text: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelledPair:
    """A pair as the file labels it: 1 = same question, 0 = different."""

    left: str
    right: str
    label: int


@dataclass
class PairSet:
    """An evaluation set: queries, the candidate pool and the labelled pairs of one file."""

    name: str
    format: str
    queries: list[EvalQuery]
    pairs: list[LabelledPair]
    candidates: list[str] = field(default_factory=list)
    checksum: str = ""
    path: Path | None = None
    #: "file:line" of pairs left out because one side is empty text
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.candidates:
            self.candidates = unique_texts(self.queries)

    @property
    def has_negatives(self) -> bool:
        return any(q.negatives for q in self.queries)

    def subset(self, n: int, seed: int = 0) -> PairSet:
        """``n`` queries drawn with ``seed``; the pool and pairs shrink to those queries."""
        if n >= len(self.queries):
            return self
        chosen = random.Random(seed).sample(range(len(self.queries)), n)
        queries = [self.queries[i] for i in sorted(chosen)]
        texts = {q.text for q in queries}
        pairs = [p for p in self.pairs if p.left in texts]
        return PairSet(
            f"{self.name}[{n}]", self.format, queries, pairs, [], self.checksum, self.path,
            self.skipped,
        )


def unique_texts(queries: Iterable[EvalQuery]) -> list[str]:
    """Every distinct text of the queries, in order of first appearance."""
    seen: dict[str, None] = {}
    for q in queries:
        seen.setdefault(q.text)
        for text in (*q.positives, *q.negatives):
            seen.setdefault(text)
    return list(seen)


def read_pairs(path: str | Path, format: str | None = None) -> PairSet:
    """Read an evaluation file; the format comes from the extension and content unless given."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SimqaError(f"{path}: no such pairs file")
    fmt = format or detect_format(path)
    if fmt not in READERS:
        raise SimqaError(f"unknown pairs format {fmt!r}; choose one of {', '.join(FORMATS)}")
    pairs, queries, skipped = READERS[fmt](path)
    if not queries:
        raise SimqaError(f"{path}: no query pairs found")
    return PairSet(path.stem, fmt, queries, pairs, [], sha256_file(path), path, skipped)


def detect_format(path: Path) -> str:
    """Guess the format from the extension, then from the first record."""
    suffix = path.suffix.lower()
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        head = handle.read(4096).lstrip("\ufeff \t\r\n")
    if suffix == ".xml" or head.startswith("<"):
        return "rqe"
    if suffix in {".jsonl", ".json", ".ndjson"} or head.startswith("{"):
        first = head.splitlines()[0] if head else ""
        try:
            keys = set(json.loads(first))
        except (ValueError, TypeError):
            keys = set()
        return "meqsum" if {"chq", "summary"} <= keys else "jsonl"
    if suffix in {".csv", ".tsv", ".txt"}:
        return "mqp"
    raise SimqaError(f"{path}: cannot tell the pairs format; give one of {', '.join(FORMATS)}")


Read = tuple[list[LabelledPair], list[EvalQuery], list[str]]


class _Grouper:
    """Collect pairs, and positives and negatives per query text, in first-seen order."""

    def __init__(self) -> None:
        self.pos: dict[str, dict[str, None]] = {}
        self.neg: dict[str, dict[str, None]] = {}
        self.pairs: list[LabelledPair] = []
        self.skipped: list[str] = []

    def add(self, query: str, text: str, label: int, where: str) -> None:
        """Record one labelled pair; a pair with an empty side is counted and left out."""
        query, text = normalise(query), normalise(text)
        if not query or not text:
            self.skipped.append(where)
            return
        self.pairs.append(LabelledPair(query, text, label))
        self.pos.setdefault(query, {})
        self.neg.setdefault(query, {})
        (self.pos if label else self.neg)[query].setdefault(text)

    def result(self) -> Read:
        return self.pairs, self.queries(), self.skipped

    def queries(self) -> list[EvalQuery]:
        out = []
        for query, positives in self.pos.items():
            # a text labelled both ways for one query counts as a positive only
            negatives = [t for t in self.neg[query] if t not in positives]
            out.append(EvalQuery(query, tuple(positives), tuple(negatives)))
        return out


def _text(value: object, where: str, what: str) -> str:
    """The value if it is a string (possibly empty); missing or not text is malformed."""
    if not isinstance(value, str):
        raise SimqaError(f"{where}: missing {what} or it is not text")
    return value


def _label(value: str, where: str) -> int:
    value = value.strip().lower()
    if value in {"1", "true", "yes"}:
        return 1
    if value in {"0", "false", "no"}:
        return 0
    raise SimqaError(f"{where}: label {value!r} is neither 1/true nor 0/false")


def read_mqp(path: Path) -> Read:
    """Curai MQP CSV without header: dr_id, question_1, question_2, label (dr_id optional)."""
    group = _Grouper()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            for row in reader:
                where = f"{path}, line {reader.line_num}"
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) not in (3, 4):
                    raise SimqaError(
                        f"{where}: expected 4 columns (dr_id, q1, q2, label), got {len(row)}"
                    )
                if reader.line_num == 1 and row[-1].strip().lower() in {"label", "is_similar"}:
                    continue  # a header line
                left = _text(row[-3], where, "question_1")
                right = _text(row[-2], where, "question_2")
                label = _label(row[-1], where)
                group.add(left, right, label, where)
        except csv.Error as exc:
            raise SimqaError(f"{path}, line {reader.line_num}: bad CSV ({exc})") from None
        except UnicodeDecodeError:
            raise SimqaError(f"{path}: not UTF-8 text") from None
    return group.result()


def read_rqe(path: Path) -> Read:
    """MEDIQA RQE XML: ``<pair value="true|false"><chq>..</chq><faq>..</faq></pair>``."""
    group = _Grouper()
    parser = expat.ParserCreate("utf-8")
    state: dict[str, object] = {}

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "pair":
            state.clear()
            state.update(line=parser.CurrentLineNumber, value=attrs.get("value"))
        elif name in {"chq", "faq"} and "line" in state:
            state["open"] = name
            state[name] = []

    def end(name: str) -> None:
        if name in {"chq", "faq"}:
            state.pop("open", None)
        elif name == "pair" and "line" in state:
            where = f"{path}, line {state['line']}"
            if state["value"] is None:
                raise SimqaError(f"{where}: pair has no value attribute")
            label = _label(str(state["value"]), where)
            for part in ("chq", "faq"):
                if part not in state:
                    raise SimqaError(f"{where}: pair has no <{part}>")
            chq, faq = ("".join(state[part]) for part in ("chq", "faq"))  # type: ignore[arg-type]
            group.add(chq, faq, label, where)
            state.clear()

    def chars(data: str) -> None:
        if "open" in state:
            state[state["open"]].append(data)  # type: ignore[index, union-attr]

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        with path.open("rb") as handle:
            parser.ParseFile(handle)
    except expat.ExpatError as exc:
        reason = expat.errors.messages[exc.code]
        raise SimqaError(f"{path}, line {exc.lineno}: bad XML ({reason})") from None
    return group.result()


def json_lines(path: Path) -> Iterable[tuple[str, dict]]:
    """(location, object) per non-blank line; a line that is not a JSON object is malformed."""
    with path.open(encoding="utf-8") as handle:
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}, line {number}"
                try:
                    record = json.loads(line)
                except ValueError:
                    raise SimqaError(f"{where}: not a JSON object") from None
                if not isinstance(record, dict):
                    raise SimqaError(f"{where}: not a JSON object")
                yield where, record
        except UnicodeDecodeError:
            raise SimqaError(f"{path}: not UTF-8 text") from None


def read_meqsum(path: Path) -> Read:
    """MeQSum JSONL (file, chq, summary): the long question should find its summary."""
    group = _Grouper()
    for where, record in json_lines(path):
        chq = _text(record.get("chq"), where, '"chq"')
        summary = _text(record.get("summary"), where, '"summary"')
        group.add(chq, summary, 1, where)
    return group.result()


def read_jsonl(path: Path) -> Read:
    """Generic JSONL: ``{"query": str, "positives": [str], "negatives": [str]}`` per line."""
    group = _Grouper()
    for where, record in json_lines(path):
        query = _text(record.get("query"), where, '"query"')
        labelled = []
        for key, label in (("positives", 1), ("negatives", 0)):
            value = record.get(key, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise SimqaError(f'{where}: "{key}" must be a list of strings')
            labelled += [(_text(v, where, f'text in "{key}"'), label) for v in value]
        if not any(label for _, label in labelled):
            raise SimqaError(f'{where}: no "positives" for the query')
        for text, label in labelled:
            group.add(query, text, label, where)
    return group.result()


READERS = {"mqp": read_mqp, "rqe": read_rqe, "meqsum": read_meqsum, "jsonl": read_jsonl}


def same_file(a: str | Path, b: str | Path) -> bool:
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if a.resolve() == b.resolve():
        return True
    return a.is_file() and b.is_file() and sha256_file(a) == sha256_file(b)
