"""Grow the judged set with long consumer questions and split the new ones into two halves.

    python benchmarks/judged/sample_long_questions.py [--n 80] [--seed 20] [--halves-seed 20]

Issue 20: the box is weakest on long messages a patient typed, and the first draw
(sample_questions.py, q01-q60) holds only 13 of them. This draw adds ``--n`` questions of
more than ``LONG_WORDS`` words (``word_count``: whitespace-separated tokens of the query text
as stored) from three origins, read in this order:

- ``LiveQA-Med``: the questions of MEDIQA 2019 QA TrainingSet1-LiveQAMed and ValidationSet
  (``sample_questions.population``, so the same distinct texts) not in the earlier draw
- ``MeQSum``: the consumer question (``chq``, never the summary) of meqsum.derived.jsonl; its
  form labels go ("SUBJECT: s / MESSAGE: m" becomes "s. m", as MEDIQA writes the same
  messages)
- ``MedicationQA``: the ``question`` of medicationqa.derived.jsonl

A question is left out when it is a copy of one seen before it: the earlier draw's questions,
for MeQSum and MedicationQA every MEDIQA QA training and validation question (MeQSum holds
many of the same messages), and every earlier question of this population. A copy: equal
texts but for case and spacing, or at least half of the shorter one's word 5-grams shared
(``near_copy``). The MEDIQA QA test set is never read.

Allocation: an equal share per origin, an origin with fewer long questions giving all it has
and the rest shared by the others. Per origin ``random.Random(seed).sample`` in population
order (one generator, origins in the order above), then the drawn questions are shuffled
together so that the qid order says nothing of the origin, and numbered after the existing
ones (q61, ...). questions.jsonl keeps the earlier rows as they are and gets the new ones
with ``origin``, ``words`` and ``draw``; questions_meta.json gets the draw under ``long``.

Halves (halves.json): the earlier 60 are ``chose`` (they chose today's defaults); per origin
the new qids, in qid order, are shuffled with ``random.Random(halves_seed)`` and the first
half is ``choose``, the rest ``report`` (an odd origin's extra question alternates between
the two, ``choose`` first). Rerunning rewrites the same files.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from sample_questions import FILES, QA, population

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data"
MEQSUM = DATA / "meqsum" / "meqsum.derived.jsonl"
MEDICATION = DATA / "medication_qa" / "medicationqa.derived.jsonl"
LIVEQA_FILES = (FILES[0], FILES[2])  # TrainingSet1-LiveQAMed, ValidationSet
ORIGINS = ("LiveQA-Med", "MeQSum", "MedicationQA")
DRAW = "long"
HALVES = ("choose", "report")
LONG_WORDS = 30  # long: more than this many words
SHINGLE = 5
COPY_SHARE = 0.5


def word_count(text: str) -> int:
    """Words of a query as stored: whitespace-separated tokens (score.py splits on this)."""
    return len(text.split())


def shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def near_copy(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> bool:
    """At least COPY_SHARE of the shorter text's word 5-grams are in the other: the same
    message sent twice or a copy with its subject line changed (0.5 separates them from
    shared boilerplate, "ClinicalTrials.gov - Question - specific study", on these data)."""
    return bool(a and b) and len(a & b) / min(len(a), len(b)) >= COPY_SHARE


def meqsum_text(chq: str) -> str:
    """The question as MEDIQA writes these messages: "subject. message", labels removed."""
    text = chq.replace("\xa0", " ")
    labelled = re.match(r"\s*SUBJECT:(.*?)MESSAGE:(.*)", text, re.S)
    if labelled:
        subject, message = (part.strip() for part in labelled.groups())
        subject = subject.strip('"').strip()
        if subject and subject[-1] not in ".?!":
            subject += "."
        text = f"{subject} {message}"
    else:
        text = re.sub(r"^\s*MESSAGE:", "", text)
    return " ".join(text.split())


def candidates() -> dict[str, list[dict[str, str]]]:
    """Every question of each origin, in file order (before copies and length are checked)."""
    liveqa = [dict(row, origin=ORIGINS[0]) for row in population() if row["file"] in LIVEQA_FILES]
    meqsum = [
        {"file": MEQSUM.name, "source_qid": row["file"], "text": meqsum_text(row["chq"]),
         "origin": ORIGINS[1]}
        for row in map(json.loads, MEQSUM.read_text(encoding="utf-8").splitlines())
    ]  # fmt: skip
    medication = [
        {"file": MEDICATION.name, "source_qid": f"line {number}",
         "text": " ".join(row["question"].split()), "origin": ORIGINS[2]}
        for number, row in enumerate(
            map(json.loads, MEDICATION.read_text(encoding="utf-8").splitlines()), 1
        )
    ]  # fmt: skip
    return dict(zip(ORIGINS, (liveqa, meqsum, medication), strict=True))


def mediqa_texts() -> list[str]:
    """Every MEDIQA QA training and validation question (never the test set)."""
    return [
        " ".join((q.findtext("QuestionText") or "").split())
        for name in FILES
        for q in ET.parse(QA / name).getroot().iter("Question")
    ]


def allocate(available: dict[str, int], n: int) -> dict[str, int]:
    """Equal shares; an origin short of its share gives all it has, the others share the
    rest (remainders to the origins listed first)."""
    take = dict.fromkeys(available, 0)
    left = n
    open_ = [o for o in available if available[o]]
    while left and open_:
        share, extra = divmod(left, len(open_))
        for i, o in enumerate(open_):
            add = min(share + (i < extra), available[o] - take[o])
            take[o] += add
            left -= add
        open_ = [o for o in open_ if take[o] < available[o]]
    if left:
        raise SystemExit(f"only {n - left} long questions available, asked for {n}")
    return take


def split_halves(rows: list[dict], seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    half: dict[str, str] = {}
    odd = 0
    for origin in ORIGINS:
        qids = sorted((r["qid"] for r in rows if r["origin"] == origin), key=qid_number)
        rng.shuffle(qids)
        cut = len(qids) // 2
        if len(qids) % 2:
            cut += odd == 0
            odd ^= 1
        half.update({q: "choose" if i < cut else "report" for i, q in enumerate(qids)})
    return half


def qid_number(qid: str) -> int:
    return int(qid.lstrip("q"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--halves-seed", type=int, default=20)
    args = parser.parse_args()
    questions = HERE / "questions.jsonl"
    rows = [json.loads(x) for x in questions.read_text(encoding="utf-8").splitlines()]
    earlier = [r for r in rows if r.get("draw") != DRAW]
    seen_texts = {" ".join(r["text"].lower().split()) for r in earlier}
    seen = [shingles(r["text"]) for r in earlier]
    mediqa = [shingles(t) for t in mediqa_texts()]
    counts: dict[str, dict[str, int]] = {}
    eligible: dict[str, list[dict]] = {}
    for origin, rows_of in candidates().items():
        kept = []
        for row in rows_of:
            key, sh = " ".join(row["text"].lower().split()), shingles(row["text"])
            refs = seen if origin == ORIGINS[0] else seen + mediqa
            if key in seen_texts or any(near_copy(sh, other) for other in refs):
                continue
            seen_texts.add(key)
            seen.append(sh)
            kept.append(row)
        eligible[origin] = [r for r in kept if word_count(r["text"]) > LONG_WORDS]
        counts[origin] = {
            "rows": len(rows_of),
            "distinct_new": len(kept),
            "long": len(eligible[origin]),
            "longest_words": max((word_count(r["text"]) for r in kept), default=0),
        }
    take = allocate({o: len(v) for o, v in eligible.items()}, args.n)
    rng = random.Random(args.seed)
    drawn = [row for o in ORIGINS for row in rng.sample(eligible[o], take[o])]
    rng.shuffle(drawn)
    first = max(qid_number(r["qid"]) for r in earlier) + 1
    new = [
        {"qid": f"q{first + i:02d}", **row, "words": word_count(row["text"]), "draw": DRAW}
        for i, row in enumerate(drawn)
    ]
    with questions.open("w", encoding="utf-8") as out:
        for row in earlier + new:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    for origin in ORIGINS:
        counts[origin]["drawn"] = take[origin]
    meta_path = HERE / "questions_meta.json"
    meta = json.loads(meta_path.read_text())
    meta[DRAW] = {
        "seed": args.seed,
        "n": args.n,
        "qids": f"{new[0]['qid']}-{new[-1]['qid']}",
        "rule": f"word_count(text) > {LONG_WORDS}: whitespace-separated tokens of the query text",
        "copies": f"dropped: equal but for case/spacing, or >= {COPY_SHARE} of the shorter "
        f"text's word {SHINGLE}-grams shared with an earlier question (earlier draw; for "
        "MeQSum and MedicationQA every MEDIQA QA training/validation question too)",
        "method": "equal shares per origin (a short origin gives all it has); "
        "random.Random(seed).sample per origin in population order, then shuffled together",
        "by_origin": counts,
        "sources": {
            ORIGINS[0]: [f"../shared/data/mediqa2019/MEDIQA_Task3_QA/{f}" for f in LIVEQA_FILES],
            ORIGINS[1]: "../shared/data/meqsum/meqsum.derived.jsonl (chq; SUBJECT/MESSAGE "
            "labels removed)",
            ORIGINS[2]: "../shared/data/medication_qa/medicationqa.derived.jsonl (question)",
        },
        "script": "sample_long_questions.py",
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    half = split_halves(new, args.halves_seed)
    halves = {
        "seed": args.halves_seed,
        "rule": "q01-q60 chose (issue 13); the new questions, stratified by origin: per origin "
        "random.Random(seed).shuffle of its qids in qid order, first half choose, rest report",
        "long_words": LONG_WORDS,
        "halves": {
            "chose": [r["qid"] for r in earlier],
            "choose": sorted((q for q, h in half.items() if h == "choose"), key=qid_number),
            "report": sorted((q for q, h in half.items() if h == "report"), key=qid_number),
        },
        "by_origin": {
            o: {h: sum(r["origin"] == o and half[r["qid"]] == h for r in new) for h in HALVES}
            for o in ORIGINS
        },
    }
    (HERE / "halves.json").write_text(json.dumps(halves, indent=1) + "\n")
    print(json.dumps({"draw": meta[DRAW], "halves": halves["by_origin"]}, indent=2))


if __name__ == "__main__":
    main()
