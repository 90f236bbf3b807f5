"""Does the product's box rank as the measured run kind did? The top 4 of ``simqa.Box`` (the
names lever on: ``simqa.lexicon.NAMES``) against a run file's, on the judged questions.

    python benchmarks/judged/box_agreement.py --index consults --run names-lw.2

Each question is boxed once, as ``simqa query`` does it (one question per model call, no
threshold: ``min_score=-1``, ``verify="off"``). A box agrees when its 4 hits are the run's
4 pairs in order (``text_key``: copies of one question are one pair; ``ids`` also counts
the same record ids). A disagreement is then explained: the same ranking computed exactly
(every live record's cosine, the same names and bonus, each question once) is compared
with the run: equal means the difference is the vector index's approximate search, not
the lever. For scale, the same count for today's box (no lever) against exact cosine,
computed here on the same questions. Writes benchmarks/results/names_box_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import provenance  # noqa: E402

import simqa  # noqa: E402
from simqa.encode.threshold import KEEP_ALL  # noqa: E402
from simqa.evaluate.judged import text_key  # noqa: E402
from simqa.index.hits import check_query  # noqa: E402
from simqa.index.names import boost  # noqa: E402
from simqa.lexicon import NAMES  # noqa: E402

K = 4


def run_boxes(name: str) -> dict[str, list[str]]:
    run = json.loads((HERE / "runs" / f"{name}.json").read_text(encoding="utf-8"))
    return {qid: [h["text_key"] for h in hits] for qid, hits in run["questions"].items()}


def run_ids(name: str) -> dict[str, list[str]]:
    run = json.loads((HERE / "runs" / f"{name}.json").read_text(encoding="utf-8"))
    return {qid: [h["id"] for h in hits] for qid, hits in run["questions"].items()}


class Exact:
    """The lever's ranking over every live record's exact cosine (what the run kind does)."""

    def __init__(self, index: Any) -> None:
        self.index = index
        snapshot = index.snapshot
        self.snapshot = snapshot
        self.ids, self.vectors = snapshot.all_ids(), np.asarray(snapshot.emb, dtype=np.float32)
        self.fields = snapshot.manifest.embed_fields

    def top(self, text: str, names: bool = True) -> list[str]:
        query = check_query(text)
        q = self.index.encoder.encode([query])[0]
        rank = (self.vectors @ q).astype(np.float32)
        found = boost(self.snapshot.names(), query, NAMES) if names else None
        if found is not None:
            rows = self.snapshot.rows(found.vids)
            rank[rows] += found.bonus
        out: list[str] = []
        order = np.argsort(-rank, kind="stable")[:64]
        records = self.snapshot.store.fetch(self.ids[order].tolist())
        for row in order.tolist():
            record = records[int(self.ids[row])][0]
            key = text_key(record.embedding_text(self.fields))
            if key not in out:
                out.append(key)
            if len(out) == K:
                break
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="consults")
    parser.add_argument("--run", default="names-lw.2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    questions = [json.loads(x) for x in (HERE / "questions.jsonl").read_text().splitlines()]
    index = simqa.open_index(args.index, refresh_every=None)
    index.search("warm up the model", 1)
    want, want_ids = run_boxes(args.run), run_ids(args.run)
    exact = Exact(index)
    fields = index.manifest.embed_fields
    per: dict[str, Any] = {}
    counts = {"questions": 0, "long": 0, "same_pairs": 0, "same_ids": 0, "long_same_pairs": 0}
    today = {"same_pairs": 0, "differ": []}  # today's box (no lever) against exact cosine
    explained = {"approximate_search": [], "other": []}
    for q in questions:
        qid, text = q["qid"], q["text"]
        box = simqa.Box.for_question(index, text, K, verify="off", min_score=KEEP_ALL)
        keys = [text_key(h.record.embedding_text(fields)) for h in box.hits]
        long = NAMES.applies(check_query(text))
        same = keys == want[qid]
        counts["questions"] += 1
        counts["long"] += long
        counts["same_pairs"] += same
        counts["long_same_pairs"] += same and long
        counts["same_ids"] += [h.id for h in box.hits] == want_ids[qid]
        entry: dict[str, Any] = {"long": long, "same": same}
        if not same:
            exact_keys = exact.top(text)
            why = "approximate_search" if exact_keys == want[qid] else "other"
            explained[why].append(qid)
            scores = [[round(h.score, 4), round(h.rank_score, 4)] for h in box.hits]
            entry.update(why=why, box=keys, run=want[qid], exact=exact_keys,
                         box_ids=[h.id for h in box.hits], scores=scores)  # fmt: skip
        per[qid] = entry
        plain = simqa.Box.for_question(index, text, K, verify="off", names=None,
                                       min_score=KEEP_ALL)  # fmt: skip
        if [text_key(h.record.embedding_text(fields)) for h in plain.hits] == exact.top(
            text, names=False
        ):
            today["same_pairs"] += 1
        else:
            today["differ"].append(qid)
    report = {
        **provenance.header(),
        "index": str(index.root),
        "run": args.run,
        "lever": vars(NAMES),
        "k": K,
        "agreement": counts,
        "disagreements": {k: v for k, v in explained.items()},
        "today_box_vs_exact_cosine": {**today, "of": len(questions)},
        "per_question": per,
    }
    path = provenance.write("names_box_agreement", report, args.out)
    print(json.dumps({"agreement": counts, "disagreements": explained,
                      "today_box_vs_exact_cosine": today}, indent=1))  # fmt: skip
    print(f"raw results: {path}")


if __name__ == "__main__":
    main()
