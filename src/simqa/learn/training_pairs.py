"""Training pairs for ``simqa tune`` and ``simqa adapt``, all read into ``TrainPair``:

- pairs files that ``simqa eval`` also reads (MEDIQA RQE xml, MQP csv, MeQSum or query
  jsonl): each query with each of its positives, and one of its hard negatives when the
  file labels some (RQE's "false" pairs);
- training-pair JSONL, one ``{"anchor": str, "positive": str, "negative": str?}`` a line
  (``write_pairs`` writes it; ``simqa tune --save-pairs`` exports what a run trained on);
- corpora that ``simqa build`` reads (folders or files): each consultation's title with its
  question text, where both exist and neither repeats the other (self-supervised pairs:
  a patient's one-line summary and their full question ask the same thing).

Hard negatives are mined with the base model (``mine_negatives``), among the pairs' own
texts and optionally an index's questions. The shared evaluation sets are refused by name,
and any file given with ``--evaluating`` (``refuse_evaluation_files``).
"""


from __future__ import annotations

import fnmatch
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simqa.errors import SimqaError
from simqa.files import sha256_file, sha256_tree
from simqa.records import normalise

#: evaluation and validation sets of the shared data: never trained on (file name patterns)
KNOWN_EVALUATION = (
    "mqp.csv",  # Curai MQP, the shared half; the other half is kept back
    "meqsum*.jsonl",
    "MeQSum*.xlsx",
    "*RQE-ValidationSet*",  # tunes thresholds and settings
    "*TestSet*",
)


@dataclass(frozen=True)
class TrainPair:
    """Two texts that ask the same thing, and optionally one that asks something else."""

    anchor: str
    positive: str
    negative: str | None = None


Log = Callable[[str], None]


# --- reading training data ----------------------------------------------------------------


def source_kind(path: Path) -> str:
    """``train`` (anchor/positive JSONL), ``pairs`` (an eval-format file) or ``corpus``."""
    if path.is_dir():
        return "corpus"
    if not path.is_file():
        raise SimqaError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8") as handle:
            head = handle.read(4096).lstrip("\ufeff \t\r\n")
    except UnicodeDecodeError:
        return "corpus"  # the corpus loaders report bad bytes with a position
    if suffix in {".jsonl", ".ndjson", ".json"} and head.startswith("{"):
        try:
            keys = set(json.loads(head.splitlines()[0]))
        except ValueError:
            keys = set()
        if "anchor" in keys:
            return "train"
        if {"chq", "summary"} <= keys or "query" in keys:
            return "pairs"
        return "corpus"
    if suffix == ".xml" and "<pair" in head:
        return "pairs"
    if suffix in {".csv", ".tsv"}:
        from simqa.ingest import detect_format

        return "corpus" if detect_format(path) else "pairs"
    return "corpus"


def read_training(path: str | Path) -> list[TrainPair]:
    """Every training pair one source holds (see the module docstring for the kinds)."""
    path = Path(path).expanduser()
    kind = source_kind(path)
    if kind == "train":
        return read_pairs_jsonl(path)
    if kind == "pairs":
        from simqa.evaluate.pairs import read_pairs

        return pairs_from_labelled(read_pairs(path).queries)
    from simqa.ingest import load

    return corpus_pairs(load([path]))


def pairs_from_labelled(queries: Iterable[Any]) -> list[TrainPair]:
    """(query, positive, hard negative) from ``EvalQuery``-like objects.

    A positive equal to its query teaches nothing and is left out; negatives are handed
    out in turn, so a query with two positives and two negatives uses both negatives.
    """
    out = []
    for query in queries:
        positives = [p for p in query.positives if p != query.text]
        negatives = list(query.negatives)
        for i, positive in enumerate(positives):
            negative = negatives[i % len(negatives)] if negatives else None
            out.append(TrainPair(query.text, positive, negative))
    return out


def corpus_pairs(records: Iterable[Any]) -> list[TrainPair]:
    """(title, question) of every consultation whose title and question both say something.

    Titles that are the question's first words, or equal to it, are skipped; so are
    titles the question contains, such as MedQuAD's focus titles ("Sickle cell anemia" for
    "What causes sickle cell anemia?"), which name a topic rather than ask the question:
    pairing them would teach that a topic and a question on it are the same question.
    """
    out = []
    for record in records:
        title, question = normalise(record.title), normalise(record.question)
        if not title or not question or len(title.split()) < 3:
            continue
        stem = title.casefold().rstrip("?.! ")
        if question.casefold().startswith(stem) or stem in question.casefold():
            continue
        out.append(TrainPair(title, question))
    return out


def read_pairs_jsonl(path: Path) -> list[TrainPair]:
    """Training-pair JSONL: ``{"anchor", "positive", "negative"?}`` per line."""
    from simqa.evaluate.pairs import json_lines

    out = []
    for where, record in json_lines(path):
        texts = {}
        for key in ("anchor", "positive", "negative"):
            value = record.get(key)
            if value is None and key == "negative":
                continue
            if not isinstance(value, str) or not normalise(value):
                raise SimqaError(f'{where}: "{key}" must be non-empty text')
            texts[key] = normalise(value)
        out.append(TrainPair(**texts))
    return out


def write_pairs(pairs: Iterable[TrainPair], path: str | Path) -> int:
    """Write training-pair JSONL (no ``negative`` key when there is none); returns the count."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for pair in pairs:
            record = {k: v for k, v in asdict(pair).items() if v is not None}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


# --- protocol hygiene ---------------------------------------------------------------------


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def refuse_evaluation_files(
    sources: Sequence[Path], evaluating: Sequence[str | Path] = ()
) -> None:
    """Raise if any training file is a known evaluation set or one of ``evaluating``."""
    held_out = {}
    for item in evaluating:
        item = Path(item).expanduser()
        if not item.is_file():
            raise SimqaError(f"{item}: no such evaluation file")
        held_out[sha256_file(item)] = item
    for source in sources:
        for member in _files(source):
            for pattern in KNOWN_EVALUATION:
                if fnmatch.fnmatch(member.name, pattern):
                    raise SimqaError(
                        f"refusing to train on {member}: it is an evaluation set ({pattern}); "
                        "train on training data and corpora only"
                    )
            if held_out and sha256_file(member) in held_out:
                raise SimqaError(
                    f"refusing to train on {member}: it is the evaluation file "
                    f"{held_out[sha256_file(member)]}"
                )




def collect(
    sources: Sequence[str | Path],
    evaluating: Sequence[str | Path] = (),
    log: Log | None = None,
) -> tuple[list[TrainPair], dict[str, str], dict[str, int]]:
    """Read every source after the protocol checks: (pairs, {file: sha256}, {file: count}).

    Pairs are deduplicated (anchor, positive) in first-seen order.
    """
    say = log or (lambda _m: None)
    paths = [Path(s).expanduser() for s in sources]
    if not paths:
        raise SimqaError("give at least one training file or corpus folder")
    for path in paths:
        if not path.exists():
            raise SimqaError(f"{path}: no such file or directory")
    refuse_evaluation_files(paths, evaluating)
    seen: set[tuple[str, str]] = set()
    pairs: list[TrainPair] = []
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    for path in paths:
        found = read_training(path)
        kept = 0
        for pair in found:
            key = (pair.anchor, pair.positive)
            if pair.anchor == pair.positive or key in seen:
                continue
            seen.add(key)
            pairs.append(pair)
            kept += 1
        files[str(path)] = sha256_tree(path)
        counts[str(path)] = kept
        say(f"{path}: {kept:,} training pairs ({source_kind(path)})")
    if not pairs:
        raise SimqaError("the training sources hold no usable pairs")
    return pairs, files, counts


def mine_negatives(
    pairs: Sequence[TrainPair],
    model: str | None = None,
    *,
    pool: Sequence[str] = (),
    pool_vectors: Any = None,
    window: tuple[int, int] = (1, 20),
    margin: float = 0.05,
    seed: int = 0,
    log: Log | None = None,
) -> list[str | None]:
    """For each pair, another pair's positive (or a ``pool`` text) that ``model`` ranks near
    the anchor (within ``window`` of its ranking) yet at least ``margin`` below the pair's
    own positive; None where there is none. The margin and skipping rank 0 keep away from
    unlabelled paraphrases, which would be false negatives. A ``pool`` of the questions an
    index will be searched over teaches the model the near misses it will meet there;
    ``pool_vectors`` (the index's own, from ``model``) saves embedding it again."""
    import numpy as np

    from simqa.encode.encoder import load_encoder

    say = log or (lambda _m: None)
    started = time.perf_counter()
    encoder = load_encoder(model)
    positives = list(dict.fromkeys(p.positive for p in pairs))
    taken = set(positives)
    extra = [i for i, text in enumerate(pool) if text not in taken]
    corpus = positives + [pool[i] for i in extra]
    anchors = list(dict.fromkeys(p.anchor for p in pairs))
    at = {text: i for i, text in enumerate(corpus)}
    own: dict[str, set[int]] = {}
    for p in pairs:
        own.setdefault(p.anchor, set()).add(at[p.positive])
    if pool_vectors is None:
        cvec = encoder.encode(corpus)
    else:
        known = np.asarray(pool_vectors, dtype=np.float32)[extra]
        cvec = np.concatenate([encoder.encode(positives), known.reshape(-1, encoder.dim)])
    avec = encoder.encode(anchors)
    row = {text: i for i, text in enumerate(anchors)}
    lo, hi = window
    hi = min(hi, len(corpus))
    rng = random.Random(seed)
    best: dict[str, list[tuple[int, float]]] = {}
    for start in range(0, len(anchors), 512):
        sims = avec[start : start + 512] @ cvec.T
        top = np.argsort(-sims, axis=1)[:, :hi]
        for offset, ranked in enumerate(top):
            text = anchors[start + offset]
            best[text] = [(int(j), float(sims[offset, j])) for j in ranked[lo:]]
    out: list[str | None] = []
    for p in pairs:
        floor = float(avec[row[p.anchor]] @ cvec[at[p.positive]]) - margin
        valid = [j for j, s in best[p.anchor] if j not in own[p.anchor] and s < floor]
        out.append(corpus[rng.choice(valid[:5])] if valid else None)
    found = sum(m is not None for m in out)
    say(f"mined {found:,} hard negatives for {len(pairs):,} pairs "
        f"in {time.perf_counter() - started:.0f}s")
    return out


def index_questions(index: str | Path, model: str | None = None) -> tuple[list[str], Any]:
    """Every distinct question an index embeds, with the index's stored vectors for them
    when it was built with ``model`` (else None: they must be embedded again)."""
    from simqa.encode.models import resolve_model
    from simqa.index import open_index

    opened = open_index(index, verify=False)
    try:
        texts, vectors = opened.questions()
        return texts, vectors if opened.manifest.model == resolve_model(model)[0] else None
    finally:
        opened.close()


