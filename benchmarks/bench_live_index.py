"""The live index, measured: write cost, search with deltas, kills, concurrent writers,
filters against exact search, open time.

    python benchmarks/bench_live_index.py writes --index consults     # one-record writes
    python benchmarks/bench_live_index.py writes --size 1000000       # ... at 1M (synthetic)
    python benchmarks/bench_live_index.py search --index consults     # a delta at the threshold
    python benchmarks/bench_live_index.py recall --index consults     # ... its recall@10
    python benchmarks/bench_live_index.py kills --kind append --trials 30   # append|delete|compact
    python benchmarks/bench_live_index.py writers --index consults    # 2 and 8 writers, readers,
                                                                      # during a compaction
    python benchmarks/bench_live_index.py filters --index consults [--delta 1999]
    python benchmarks/bench_live_index.py open --size 1000000

Each part writes its raw JSON to benchmarks/results/live_index_<part>[_<variant>].json with
the machine description; the README and the closing notes quote those files. ``writes``,
``search``, ``filters`` and ``open`` time things: run them on an otherwise idle machine.
Every part works on a copy of the index (under indexes/, removed afterwards).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import provenance

import simqa
import simqa.index.layout as layout
from simqa import Consultation
from simqa.index.hits import question_key

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MEQSUM = DATA / "meqsum" / "meqsum.derived.jsonl"
MQP = DATA / "curai_mqp" / "mqp.csv"

#: command, date, machine and load average, taken when the run starts
HEADER: dict = {}


def save(part: str, result: dict) -> None:
    path = provenance.write(f"live_index_{part}", {**HEADER, **result})
    print(json.dumps(result, indent=2))
    print(f"-> {path}", file=sys.stderr)


# --- inputs and copies ------------------------------------------------------------------------


def new_consultations(n: int) -> list[Consultation]:
    """Consultations none of the quick-start corpora hold, and none paraphrasing the patient
    questions the searches ask (curai MQP's first questions): MeQSum's consumer questions,
    MedicationQA's, the consumer questions of MEDIQA's RQE training pairs, then (only if more
    are asked for) the MQP's second questions."""
    import csv
    import re as regex

    out = []
    for number, line in enumerate(MEQSUM.read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        question = " ".join(row["chq"].split())
        out.append(Consultation(id=f"bench-meqsum-{number}", title=row["summary"].strip(),
                                question=question, source="meqsum"))  # fmt: skip
    medication = DATA / "medication_qa" / "medicationqa.derived.jsonl"
    for number, line in enumerate(medication.read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        out.append(Consultation(id=f"bench-medqa-{number}", question=row["question"].strip(),
                                reply=row.get("answer", ""), source="medicationqa"))  # fmt: skip
    rqe = DATA / "mediqa2019" / "MEDIQA_Task2_RQE" / "MEDIQA2019-Task2-RQE-TrainingSet-AMIA2016.xml"
    chqs = regex.findall(r"<chq>(.*?)</chq>", rqe.read_text(encoding="utf-8"), regex.S)
    out += [Consultation(id=f"bench-rqe-{i}", question=" ".join(text.split()), source="rqe")
            for i, text in enumerate(dict.fromkeys(chqs))]  # fmt: skip
    with MQP.open(newline="", encoding="utf-8") as handle:
        seconds = list(dict.fromkeys(row[2] for row in csv.reader(handle)))
    out += [Consultation(id=f"bench-mqp-{i}", question=text, source="mqp")
            for i, text in enumerate(seconds)]  # fmt: skip
    if n > len(out):
        raise SystemExit(f"only {len(out)} new consultations available, {n} asked")
    return out[:n]


def patient_questions(n: int) -> list[str]:
    import csv

    with MQP.open(newline="", encoding="utf-8") as handle:
        return list(dict.fromkeys(row[1] for row in csv.reader(handle)))[:n]


@contextlib.contextmanager
def copy_of(index: str) -> Iterator[Path]:
    """A private copy of an index's live version (same file system as indexes/)."""
    source = layout.index_path(index).resolve()
    (ROOT / "indexes").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "indexes", prefix=".bench-") as tmp:
        target = Path(tmp) / "copy"
        target.mkdir()
        version = layout.current_name(source)
        shutil.copytree(source / version, target / version)
        shutil.copy2(source / "CURRENT", target / "CURRENT")
        models = source / layout.MODELS
        if models.is_dir():
            shutil.copytree(models, target / layout.MODELS)
        yield target


@contextlib.contextmanager
def synthetic(n: int) -> Iterator[Path]:
    """An index of ``n`` synthetic consultations and clustered random unit vectors, as
    ``simqa build`` lays it out (no model: records say "synthetic i")."""
    import simqa.vectors as vector_indexes
    from simqa.index.build import save_base
    from simqa.index.manifest import Manifest
    from simqa.index.store import RecordStore

    dim = 384
    (ROOT / "indexes").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "indexes", prefix=".bench-") as tmp:
        root = Path(tmp) / "big"
        root.mkdir()
        rng = np.random.default_rng(0)
        centers = rng.normal(size=(2000, dim)).astype(np.float32)
        vectors = centers[rng.integers(0, 2000, n)] + 0.6 * rng.normal(size=(n, dim)).astype(
            np.float32
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with layout.staged_version(root) as staging:
            store = RecordStore(staging / "records.sqlite")
            records = (Consultation(id=f"c{i}", title=f"Question {i}", question=f"synthetic {i}",
                                    department=f"d{i % 50}", tags=[f"t{i % 300}"])
                       for i in range(n))  # fmt: skip
            to_embed, _ = store.upsert(records, "title+question")
            ids = np.array([vid for vid, _ in to_embed], dtype=np.int64)
            kind, params, reason = vector_indexes.choose(n, dim)
            index = vector_indexes.create(kind, dim, **params)
            index.add(ids, vectors)
            if kind == "ivf_pq":
                index.set_search_params(nprobe=96, k_factor=2)
            manifest = Manifest(model="all-MiniLM-L6-v2", dim=dim, count=0, vector_index={},
                                encoder="onnx", index_reason=reason, min_score=None,
                                next_vid=store.next_vid())  # fmt: skip
            save_base(staging, store, index, ids, vectors, {}, manifest)
        yield root


def io_counters() -> dict[str, int]:
    """This process's I/O counters (bytes passed to write calls, bytes sent to storage)."""
    out = {}
    with open("/proc/self/io") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            out[key.strip()] = int(value)
    return out


def summary(values: list[float], digits: int = 1) -> dict:
    if not values:
        return {}
    return {"p50": round(float(np.median(values)), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "n": len(values)}  # fmt: skip


# --- writes: what one small write costs ------------------------------------------------------


def writes(args: argparse.Namespace) -> None:
    """One-record appends and deletes through the library (model loaded) and the command
    line, as delta segments, against the same writes made by the code before delta segments
    (``--baseline old``: commit ``PRE_SEGMENTS``, in a process of its own on its own copy,
    interleaved) and/or as a full rewrite by this code (``full``: a whole new base), with
    bytes written from each process's own I/O counters."""
    from simqa.index.build import write_many

    n = 2 * (args.repeats + args.full_repeats + args.cli_repeats) + 4
    fresh = iter(new_consultations(n))
    holder = synthetic(args.size) if args.size else copy_of(args.index)
    baselines = {"old", "full"} if args.baseline == "both" else {args.baseline} - {"none"}
    if args.size and "old" in baselines:
        raise SystemExit("--baseline old needs a real index (the old code reads format 2)")
    with holder as path, contextlib.ExitStack() as stack:
        old = stack.enter_context(OldWriter(args.index)) if "old" in baselines else None
        # the full rewrites go to a copy of their own: a new base under the index measured
        # would make its next write load that base
        other = stack.enter_context(
            (synthetic(args.size) if args.size else copy_of(args.index))
            if "full" in baselines else contextlib.nullcontext(None)
        )  # fmt: skip
        index = simqa.open_index(path)
        index.encoder.encode(["warm up the model"])
        base_ids = [r.id for _, r in zip(range(5000), index.records(), strict=False)]
        doomed = iter(random.Random(0).sample(base_ids, len(base_ids)))
        size = index.info()["size_bytes"]
        runs: dict[str, dict[str, list[float]]] = {}

        def timed(mode: str, kind: str, call) -> None:
            before, started = io_counters(), time.perf_counter()
            call()
            wall = (time.perf_counter() - started) * 1000
            after = io_counters()
            record(mode, kind, wall, after["wchar"] - before["wchar"],
                   after["write_bytes"] - before["write_bytes"])  # fmt: skip

        def record(mode: str, kind: str, ms: float, wchar: int, write_bytes: int) -> None:
            run = runs.setdefault(f"{mode} {kind}", {"ms": [], "wchar": [], "write_bytes": []})
            run["ms"].append(ms)
            run["wchar"].append(wchar)
            run["write_bytes"].append(write_bytes)

        # interleaved: this code's writes and the baselines' alternate on the same machine
        for i in range(max(args.repeats, args.full_repeats)):
            if i < args.repeats:
                timed("delta", "append", lambda: index.add([next(fresh)]))
                timed("delta", "delete", lambda: index.delete([next(doomed)]))
            if i < args.full_repeats and "full" in baselines:
                timed("full rewrite", "append",
                      lambda: write_many(other, [("add", [next(fresh)])], full=True))
                timed("full rewrite", "delete",
                      lambda: write_many(other, [("delete", [next(doomed)])], full=True))
            if i < args.full_repeats and old is not None:
                record("before segments", "append", *old.write("append", next(fresh).to_dict()))
                record("before segments", "delete", *old.write("delete", next(doomed)))
        index.close()
        encoder = []  # the model's own time for the appended texts: what no write can avoid
        for record in new_consultations(args.repeats):
            started = time.perf_counter()
            index.encoder.encode([record.embedding_text(index.manifest.embed_fields)])
            encoder.append((time.perf_counter() - started) * 1000)
        cli = cli_writes(path, fresh, doomed, args.cli_repeats)
        verified = simqa.open_index(path, verify=True)
        final = {"records": len(verified), "segments": len(verified.manifest.segments)}
        verified.close()
    table = {}
    for name, run in runs.items():
        table[name] = {"ms": summary(run["ms"]), "wchar_bytes": summary(run["wchar"], 0),
                       "write_bytes": summary(run["write_bytes"], 0)}  # fmt: skip
    ratios = {}
    for kind in ("append", "delete"):
        delta = runs.get(f"delta {kind}")
        for mode in ("before segments", "full rewrite"):
            other = runs.get(f"{mode} {kind}")
            if delta and other:
                ratios[f"{kind}: delta / {mode}"] = round(
                    float(np.median(delta["ms"]) / np.median(other["ms"])), 4)
    variant = f"{args.size}" if args.size else Path(args.index).name
    save(f"writes_{variant}", {
        "index": "synthetic" if args.size else args.index, "index_bytes": size,
        "records_before": len(base_ids) if not args.size else args.size,
        "note": "delta: the write publishes one delta segment (this change); before "
                f"segments: the same write by simqa at {PRE_SEGMENTS} (a whole new version, "
                "the base's checksums read first), model loaded in its own process; full "
                "rewrite: this code publishing a whole new base; wchar: bytes passed to write "
                "calls; write_bytes: bytes the process sent to storage; library: model loaded",
        "library": table, "p50_ratios": ratios, "encoder_ms_same_texts": summary(encoder),
        "cli": cli, "after": final,
    })  # fmt: skip


#: the last commit before delta segments: the baseline of ``writes --baseline old``
PRE_SEGMENTS = "ca14853"

_OLD_DRIVER = """
import json, sys, time
import simqa
from simqa import Consultation
index = simqa.open_index(sys.argv[1])
index.encoder.encode(["warm up the model"])
def io():
    with open("/proc/self/io") as handle:
        return {k.strip(): int(v) for k, v in (line.split(":") for line in handle)}
print("ready", flush=True)
for line in sys.stdin:
    kind, payload = json.loads(line)
    before, started = io(), time.perf_counter()
    if kind == "append":
        index.add([Consultation.from_dict(payload)])
    else:
        index.delete([payload])
    ms = (time.perf_counter() - started) * 1000
    after = io()
    print(json.dumps([ms, after["wchar"] - before["wchar"],
                      after["write_bytes"] - before["write_bytes"]]), flush=True)
"""


class OldWriter:
    """simqa as it was before delta segments, writing its own copy of the index in a process
    of its own (model loaded once), one write per request."""

    def __init__(self, index: str) -> None:
        self.index = index

    def __enter__(self) -> OldWriter:
        self._stack = contextlib.ExitStack()
        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", PRE_SEGMENTS, "src"],
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        path = self._stack.enter_context(copy_of(self.index))
        env = {**os.environ, "PYTHONPATH": str(tmp / "src")}
        self.proc = subprocess.Popen([sys.executable, "-c", _OLD_DRIVER, str(path)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the pre-segments writer did not start")
        return self

    def write(self, kind: str, payload) -> tuple[float, int, int]:
        self.proc.stdin.write(json.dumps([kind, payload]) + "\n")
        self.proc.stdin.flush()
        ms, wchar, write_bytes = json.loads(self.proc.stdout.readline())
        return ms, wchar, write_bytes

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self._stack.close()


#: runs the simqa command and reports its own I/O counters at exit
_CLI_WITH_IO = (
    "import atexit, sys\n"
    "def report():\n"
    "    sys.stderr.write('IO ' + open('/proc/self/io').read().replace('\\n', ' ') + '\\n')\n"
    "atexit.register(report)\n"
    "from simqa.cli.app import main\n"
    "sys.argv = ['simqa', *sys.argv[1:]]\n"
    "main()\n"
)


def cli_writes(path: Path, fresh, doomed, repeats: int) -> dict:
    """``simqa build one.jsonl --append`` and ``simqa delete ID``: wall seconds (model
    load included) and the process's bytes written."""
    out: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            one = Path(tmp) / "one.jsonl"
            one.write_text(json.dumps(next(fresh).to_dict()) + "\n")
            for kind, cmd in (
                ("append", ["build", str(one), "--index", str(path), "--append", "-q"]),
                ("delete", ["delete", next(doomed), "--index", str(path)]),
            ):
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-c", _CLI_WITH_IO, *cmd],
                                      capture_output=True, text=True)  # fmt: skip
                wall = time.perf_counter() - started
                if done.returncode:
                    raise SystemExit(done.stderr[-2000:])
                said = done.stderr.rsplit("IO ", 1)[1]
                counters = {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", said)}
                run = out.setdefault(kind, {"s": [], "wchar": [], "write_bytes": []})
                run["s"].append(wall)
                run["wchar"].append(counters.get("wchar", -1))
                run["write_bytes"].append(counters.get("write_bytes", -1))
    return {kind: {"wall_s": summary(run["s"], 2), "wchar_bytes": summary(run["wchar"], 0),
                   "write_bytes": summary(run["write_bytes"], 0)}
            for kind, run in out.items()}  # fmt: skip


# --- search with a delta at the compaction threshold ----------------------------------------


def with_delta(path: Path, records: int, segments: int, deletes: int) -> simqa.Index:
    """Give the index at ``path`` ``records`` new records in ``segments`` writes and
    ``deletes`` deleted base records (library writes: no compaction)."""
    index = simqa.open_index(path)
    new = new_consultations(records)
    step = -(-records // segments)
    doomed = random.Random(1).sample([r.id for r in index.records()], deletes)
    starts = list(range(0, records, step))
    for start in starts:
        writes = [("add", new[start : start + step])]
        if start == starts[-1] and doomed:  # the deletions go with the last write
            writes.append(("delete", doomed))
        index.apply(writes, compact=False)
    return index


def search(args: argparse.Namespace) -> None:
    """Box latency (by id and by a question's vector, one query at a time) with no delta and
    with a delta just under the compaction threshold, interleaved rounds."""
    from simqa.index import compact as compaction

    records = args.delta or compaction.DELTA_RECORDS - 1
    with copy_of(args.index) as plain_path, copy_of(args.index) as grown_path:
        plain = simqa.open_index(plain_path)
        grown = with_delta(grown_path, records, compaction.MERGE_SEGMENTS, args.deletes)
        assert compaction.due(grown.snapshot) is None, "past the threshold"
        vectors = plain.encoder.encode(patient_questions(args.queries))
        both = sorted({r.id for r in plain.records()} & {r.id for r in grown.records()})
        ids = random.Random(2).sample(both, args.queries)  # boxes by id, live in both
        timings: dict[str, list[float]] = {}
        for _round in range(args.rounds):
            for name, index in (("no delta", plain), ("delta", grown)):
                for kind in ("similar", "search"):
                    per = []
                    for i in range(args.queries):
                        t0 = time.perf_counter()
                        if kind == "similar":
                            index.similar(ids[i], 5)
                        else:
                            index.search_vectors(vectors[i], 5)
                        per.append((time.perf_counter() - t0) * 1000)
                    timings.setdefault(f"{name} {kind}", []).append(float(np.median(per)))
        info = grown.info()["delta"]
    result = {key: {"p50_ms_by_round": [round(v, 3) for v in values],
                    "median_of_rounds_ms": round(float(np.median(values)), 3)}
              for key, values in timings.items()}  # fmt: skip
    above = {kind: round(result[f"delta {kind}"]["median_of_rounds_ms"]
                         - result[f"no delta {kind}"]["median_of_rounds_ms"], 3)
             for kind in ("similar", "search")}  # fmt: skip
    save("search", {"index": args.index, "delta": info, "queries": args.queries,
                    "rounds": args.rounds, "timings": result, "delta_above_no_delta_ms": above,
                    "note": "p50 of one-query calls per round (min_score and k=5 as a box "
                            "asks); similar: a box by id (stored vector); search: a patient "
                            "question's vector (curai MQP), encoding excluded"})  # fmt: skip


def recall(args: argparse.Namespace) -> None:
    """recall@10 of candidates against exact search over the live vectors: the index with a
    delta at the threshold, the same folded by compaction, and a vector index trained
    anew on the same vectors with the same parameters (a rebuild, without re-encoding)."""
    import simqa.vectors as vector_indexes
    from simqa.index import compact as compaction
    from simqa.vectors.tuning import exact_topk, recall_at_k

    records = args.delta or compaction.DELTA_RECORDS - 1
    with copy_of(args.index) as path:
        grown = with_delta(path, records, compaction.MERGE_SEGMENTS, args.deletes)
        queries = np.ascontiguousarray(grown.encoder.encode(patient_questions(args.queries)))
        ids, matrix = grown.embeddings()
        ids, matrix = np.asarray(ids), np.ascontiguousarray(matrix, dtype=np.float32)
        scores, _rows = exact_topk(queries, matrix, 10)
        kth = scores[:, 9]

        def measure(search) -> dict:
            _s, found = search(queries, 10)
            per = recall_at_k(queries, found, kth, matrix, ids, 10)
            return {"recall_at_10": round(float(per.mean()), 4)}

        snapshot = grown.snapshot
        config = dict(snapshot.manifest.vector_index)
        results = {"delta": measure(snapshot.vectors.search), "delta_info": grown.info()["delta"]}
        results["delta_share_of_top10"] = round(float(
            np.isin(snapshot.vectors.search(queries, 10)[1], snapshot.d_ids).mean()), 4)
        rebuilt = vector_indexes.create(config["kind"], config["dim"], **{
            k: v for k, v in config.items() if k not in ("kind", "dim", "nprobe", "k_factor",
                                                         "efSearch")})  # fmt: skip
        rebuilt.add(ids, matrix)
        rebuilt.set_search_params(**{k: config[k] for k in ("nprobe", "k_factor", "efSearch")
                                     if k in config})  # fmt: skip
        results["rebuilt"] = measure(rebuilt.search)
        del rebuilt
        grown.compact()
        results["compacted"] = measure(grown.snapshot.vectors.search)
        results["delta_minus_rebuilt"] = round(
            results["delta"]["recall_at_10"] - results["rebuilt"]["recall_at_10"], 4)
    save("recall", {"index": args.index, "queries": args.queries,
                    "vectors": len(ids), "index_params": config, **results,
                    "note": "queries: curai MQP patient questions; exact: brute force over "
                            "every live vector; ties with the exact 10th count as hits"})


# --- faults: writers and compactions killed at random moments --------------------------------


def kills(args: argparse.Namespace) -> None:
    """`simqa build --append`, `simqa delete` or `simqa compact` SIGKILLed at random
    moments: what the index holds after each, and what the next write leaves."""
    from simqa.ingest import load

    kind = args.kind
    rng = random.Random(args.seed)
    trials = []
    holder = copy_of(args.index) if kind == "compact" else contextlib.nullcontext(None)
    with holder as big, tempfile.TemporaryDirectory() as tmp:
        if kind == "compact":  # a compaction long enough to be killed inside: the quick start
            path = big
        else:
            real = list(load([DATA / "lasseregin_medical_qa" / "questionDoctorQAs.json"]))
            path = Path(tmp) / "idx"
            simqa.build(real[:1000], path)
        index = simqa.open_index(path)
        committed = {r.id for r in index.records()}
        fresh = iter(new_consultations(2 + (args.trials + 3) * 25))
        doomed = iter(random.Random(args.seed).sample(sorted(committed), len(committed)))

        def command(t: int) -> tuple[list[str], set[str], set[str]]:
            """The command of trial t, the ids it adds and the ids it deletes."""
            if kind == "append":
                batch = [next(fresh) for _ in range(20)]
                f = Path(tmp) / f"k{t}.jsonl"
                f.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in batch))
                return (["build", str(f), "--index", str(path), "--append", "-q"],
                        {r.id for r in batch}, set())  # fmt: skip
            if kind == "delete":
                gone = {next(doomed) for _ in range(5)}
                return ["delete", *sorted(gone), "--index", str(path)], set(), gone
            # compact: first give it something to fold (a library write, not killed)
            batch, gone = [next(fresh) for _ in range(20)], {next(doomed) for _ in range(5)}
            simqa.open_index(path).apply([("add", batch), ("delete", sorted(gone))],
                                         compact=False)  # fmt: skip
            nonlocal committed
            committed = (committed | {r.id for r in batch}) - gone
            return ["compact", "--index", str(path)], set(), set()

        def run(cmd: list[str]) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-m", "simqa", *cmd],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        index.close()
        work = layout.COMPACTING_PREFIX if kind == "compact" else layout.STAGING_PREFIX
        fulls, works = [], []
        for calibration in range(3):  # whole runs: how long a command and its write take
            cmd, added, gone = command(-1 - calibration)
            started = time.perf_counter()
            proc = run(cmd)
            began = wait_for(path, work, proc)
            ended = wait_for(path, work, proc, gone=True)  # renamed into place: published
            if proc.wait():
                raise SystemExit(f"{cmd} failed")
            fulls.append(time.perf_counter() - started)
            works.append((ended or time.perf_counter()) - began if began else fulls[-1])
            committed = (committed | added) - gone
        full, in_work = float(np.median(fulls)), float(np.median(works))
        for t in range(1, args.trials + 1):
            cmd, added, gone = command(t)
            proc = run(cmd)
            # most of a command's time is starting Python (and loading the model): a third of
            # the kills land anywhere in the command's run, the rest inside its write (or its
            # compaction): from the moment its work folder appears to a little past the time
            # the first run took to publish it
            if t % 3 == 0:
                delay = rng.uniform(0.3 * full, 1.1 * full)
                where = "anywhere"
            else:
                wait_for(path, work, proc)
                delay = rng.uniform(0, 1.2 * in_work)
                where = "in its work"
            try:
                code = proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                code = None
            leftovers = sorted(p.name for p in path.iterdir()
                               if p.name.startswith((layout.STAGING_PREFIX,
                                                     layout.COMPACTING_PREFIX)))  # fmt: skip
            opened = simqa.open_index(path, verify=True)  # every checksum
            present = {r.id for r in opened.records()}
            if added:
                landed = added <= present
                state = "all" if landed else ("none" if not added & present else "SOME")
            elif gone:
                landed = not (gone & present)
                state = "all" if landed else ("none" if gone <= present else "SOME")
            else:
                landed, state = True, "n/a"
            if code == 0 or landed:
                committed = (committed | added) - gone
            first = opened.snapshot.vectors_of(opened.snapshot.all_ids()[:1])
            answers = opened.search_vectors(first, 1, min_score=-1)
            trials.append({
                "trial": t, "kill_aimed": where, "delay_s": round(delay, 3),
                "outcome": "completed" if code == 0 else "killed",
                "its_change": state, "version": opened.dir.name,
                "segments": len(opened.manifest.segments), "records": len(present),
                "holds_every_committed": committed <= present,
                "nothing_deleted_back": present <= committed, "answers": bool(answers[0]),
                "left_behind": leftovers,
            })  # fmt: skip
            opened.close()
        opened = simqa.open_index(path)
        opened.add([next(fresh)], compact=False)
        opened.close()
        left = sorted(p.name for p in path.iterdir() if p.name.startswith("."))
        live = layout.current_name(path)
        stale = [v for v in layout.versions(path) if v != live]
    save(f"kills_{kind}", {
        "kind": kind, "one_run_seconds": round(full, 2),
        "work_seconds": round(in_work, 3), "trials": trials,
        "summary": {
            "killed": sum(t["outcome"] == "killed" for t in trials),
            "completed": sum(t["outcome"] == "completed" for t in trials),
            "killed_with_work_left_behind": sum(bool(t["left_behind"]) for t in trials),
            "killed_after_publishing": sum(t["outcome"] == "killed" and t["its_change"] == "all"
                                           for t in trials),
            "all_open_with_every_checksum": True,
            "all_hold_every_committed_record": all(t["holds_every_committed"] for t in trials),
            "no_deleted_record_back": all(t["nothing_deleted_back"] for t in trials),
            "partial_writes": sum(t["its_change"] == "SOME" for t in trials),
            "after_the_next_write": {"dot_files": left, "versions_besides_live": stale},
        },
    })


def wait_for(path: Path, prefix: str, proc: subprocess.Popen, gone: bool = False) -> float | None:
    """Wait until a folder named ``prefix...`` appears in ``path`` (the process began its
    write; with ``gone``: until none is left, it published) or the process ends; the time
    that happened, or None."""
    while proc.poll() is None:
        if any(p.name.startswith(prefix) for p in path.iterdir()) != gone:
            return time.perf_counter()
        time.sleep(0.0005)
    return None


# --- concurrent writers and readers during a compaction -------------------------------------


class Readers:
    """Threads searching an index (refreshing by itself) until stopped; counts and errors."""

    def __init__(self, path: Path, threads: int = 2) -> None:
        self.index = simqa.open_index(path, refresh_every=0.2)
        self.vectors = self.index.encoder.encode(patient_questions(50))
        self.stop, self.reads, self.errors = threading.Event(), 0, []
        self.threads = [threading.Thread(target=self.read, args=(n,)) for n in range(threads)]
        for t in self.threads:
            t.start()

    def read(self, number: int) -> None:
        i = number
        while not self.stop.is_set():
            try:
                self.index.search_vectors(self.vectors[i % len(self.vectors)], 5)
                self.reads += 1
            except Exception as exc:  # reported
                self.errors.append(repr(exc))
            i += 1

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        self.index.close()


def writers(args: argparse.Namespace) -> None:
    """N `simqa build --append` processes at once on one index while `simqa compact` runs
    and reader threads search: every record must land, nothing must be lost."""
    runs = []
    fresh = iter(new_consultations(2000))
    simqa_cmd = [sys.executable, "-m", "simqa"]
    for n in (2, 8):
        with copy_of(args.index) as path, tempfile.TemporaryDirectory() as tmp:
            before = simqa.open_index(path)
            expected = {r.id for r in before.records()}
            # something for the compaction to fold, so that it has work while writers write
            warm = [next(fresh) for _ in range(50)]
            before.add(warm, compact=False)
            before.close()
            expected |= {r.id for r in warm}
            files, sent = [], set()
            for w in range(n):
                f = Path(tmp) / f"{n}-{w}.jsonl"
                batch = [next(fresh) for _ in range(10)]
                sent |= {r.id for r in batch}
                f.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in batch))
                files.append(f)
            readers = Readers(path)
            started = time.perf_counter()
            compaction = subprocess.Popen([*simqa_cmd, "compact", "--index", str(path)],
                                          stderr=subprocess.PIPE, text=True)
            procs = [subprocess.Popen([*simqa_cmd, "build", str(f), "--index", str(path),
                                       "--append", "-q"], stderr=subprocess.PIPE, text=True)
                     for f in files]  # fmt: skip
            codes = [p.wait() for p in procs]
            writer_errors = [p.stderr.read()[-500:] for p in procs if p.returncode]
            compacted = compaction.wait()
            compaction_said = compaction.stderr.read().strip()[-500:]
            wall = time.perf_counter() - started
            readers.close()
            index = simqa.open_index(path, verify=True)
            ids = {r.id for r in index.records()}
            runs.append({
                "writers": n, "records_before": len(expected) - len(warm),
                "records_sent": len(sent) + len(warm), "records_after": len(index),
                "vectors_after": len(index.snapshot.vectors),
                "all_landed": (expected | sent) == ids, "exit_codes": codes,
                "writer_errors": writer_errors, "compaction_exit_code": compacted,
                "compaction_said": compaction_said, "reads_during": readers.reads,
                "read_errors": readers.errors[:5], "wall_seconds": round(wall, 1),
                "segments_after": len(index.manifest.segments), "version": index.dir.name,
            })  # fmt: skip
            index.close()
    save("writers", {"index": args.index, "runs": runs})


# --- filters against exact search ------------------------------------------------------------


def filters(args: argparse.Namespace) -> None:
    """Filtered search against exact search over the matching records, per department and
    source; with ``--delta N`` on a copy given N new records (and deletions) first."""
    from simqa.index import compact as compaction
    from simqa.index.store import Filter

    holder = copy_of(args.index) if args.delta else contextlib.nullcontext(None)
    with holder as path:
        if args.delta:
            index = with_delta(path, args.delta, compaction.MERGE_SEGMENTS, args.deletes)
        else:
            index = simqa.open_index(args.index)
        snap = index.snapshot
        ids, vectors = index.embeddings()
        groups = [("none", "(no filter)", len(ids))]  # the approximate index's own agreement
        groups += [("department", d, c) for d, c in snap.store.counts_by("department").items()]
        groups += [("source", d, c) for d, c in snap.store.counts_by("source").items()]
        rng = np.random.default_rng(0)
        queries = np.asarray(vectors[rng.choice(len(ids), args.queries, replace=False)])
        index.search_vectors(queries[:1], args.k, min_score=-1)  # first-use loading, untimed
        rows = []
        for column, value, count in groups:
            if value == "(none)":
                continue
            where = {} if column == "none" else {column: value}
            vids = snap.store.vids_where(Filter(**where)) if where else np.asarray(ids)
            matrix = snap.vectors_of(vids)
            records = snap.store.fetch(vids)
            fields = index.manifest.embed_fields
            keys = [question_key(records[int(v)][0], fields) for v in vids]
            equal = 0
            times = []
            for _round in range(3):  # the median of 3 passes, with their spread
                started = time.perf_counter()
                found = index.search_vectors(queries, args.k, **where, min_score=-1)
                times.append((time.perf_counter() - started) / len(queries) * 1000)
            per_query = float(np.median(times))
            for query, hits in zip(queries, found, strict=True):
                best = expected(snap, matrix, vids, keys, query, args.k)
                got = np.array([h.rank_score for h in hits])
                equal += int(len(got) == len(best) and np.allclose(got, best, atol=1e-4))
            rows.append({column: value, "records": count,
                         "share": round(count / len(ids), 5), "queries": len(queries),
                         "equal_to_exact": equal, "ms_per_query": round(per_query, 2),
                         "ms_min_max": [round(min(times), 2), round(max(times), 2)]})  # fmt: skip
        delta = index.info()["delta"]
        save("filters" + (f"_delta{args.delta}" if args.delta else ""), {
            "index": str(args.index), "index_type": index.manifest.vector_index["kind"],
            "records": len(ids), "k": args.k, "hub_penalty": index.manifest.hub_penalty,
            "delta": delta, "filters": rows})  # fmt: skip


def expected(
    snap, matrix: np.ndarray, vids: np.ndarray, keys: list[str], query: np.ndarray, k: int
) -> np.ndarray:
    """The ranking scores exact search over the matching records gives: the best cosines
    (the best RERANK_DEPTH re-ordered by the hub penalty when the index has one), each
    question once, as a box shows it."""
    from simqa.index.density import RERANK_DEPTH

    cosines = matrix @ query
    order = np.argsort(-cosines, kind="stable")
    ranked = cosines
    if snap.has_density:
        order = order[: max(k + 8, RERANK_DEPTH)]
        ranked = cosines.astype(np.float64).copy()
        ranked[order] -= snap.hub_weight * snap.density_of(vids[order])
        order = order[np.argsort(-ranked[order], kind="stable")]
    best, seen = [], set()
    for j in order:
        if keys[j] not in seen:
            seen.add(keys[j])
            best.append(ranked[j])
            if len(best) == k:
                break
    return np.array(best)


# --- opening ---------------------------------------------------------------------------------


def open_time(args: argparse.Namespace) -> None:
    """Open an index of ``--size`` synthetic vectors: sizes and headers vs every checksum."""
    t0 = time.perf_counter()
    with synthetic(args.size) as root:
        built = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in layout.current_version(root).iterdir())
        opened = simqa.open_index(root)
        query = opened.snapshot.vectors_of(opened.snapshot.all_ids()[:1])
        kind = opened.manifest.vector_index["kind"]
        opened.close()
        timings: dict[str, list[float]] = {"open_checks": [], "open_checksums": [],
                                           "first_hit": []}  # fmt: skip
        for _ in range(args.repeats):
            for verify, key in ((False, "open_checks"), (True, "open_checksums")):
                with _fresh_process_caches():
                    started = time.perf_counter()
                    opened = simqa.open_index(root, verify=verify)
                    timings[key].append(time.perf_counter() - started)
                    if not verify:
                        started = time.perf_counter()
                        hits = opened.search_vectors(query, 5, min_score=-1)[0]
                        simqa.render(hits, "text")
                        timings["first_hit"].append(time.perf_counter() - started)
                    opened.close()
    summary_ = {key: {"median_ms": round(1000 * float(np.median(v)), 1),
                      "min_ms": round(1000 * min(v), 1), "max_ms": round(1000 * max(v), 1)}
                for key, v in timings.items()}  # fmt: skip
    save("open", {"vectors": args.size, "index_type": kind, "index_bytes": size,
                  "build_seconds": round(built, 1), "repeats": args.repeats,
                  "note": "open_checks: sizes and headers (the default since the live-index "
                          "change); open_checksums: every file's sha256 (what every open did "
                          "before; now simqa info --verify and compaction); first_hit: search "
                          "+ fetch + render of one query vector right after opening (since "
                          "delta segments it includes mapping the vector index, which opening "
                          "no longer does)",
                  "timings": summary_})  # fmt: skip


@contextlib.contextmanager
def _fresh_process_caches() -> Iterator[None]:
    """Forget the loaded bases and deltas a process shares between versions, so that each
    open pays for loading as a new process would."""
    from simqa.index import segment

    with segment._LOADED_LOCK:
        segment._LOADED.clear()
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    w = sub.add_parser("writes")
    w.add_argument("--index", default="consults")
    w.add_argument("--size", type=int, default=0, help="a synthetic index of this many instead")
    w.add_argument("--repeats", type=int, default=20)
    w.add_argument("--full-repeats", type=int, default=3, help="writes of each baseline")
    w.add_argument("--baseline", choices=("old", "full", "both", "none"), default="both")
    w.add_argument("--cli-repeats", type=int, default=3)
    for name in ("search", "recall"):
        s = sub.add_parser(name)
        s.add_argument("--index", default="consults")
        s.add_argument("--queries", type=int, default=500)
        s.add_argument("--delta", type=int, default=0, help="new records (default: threshold-1)")
        s.add_argument("--deletes", type=int, default=250)
        s.add_argument("--rounds", type=int, default=5)
    kp = sub.add_parser("kills")
    kp.add_argument("--kind", choices=("append", "delete", "compact"), default="append")
    kp.add_argument("--index", default="consults", help="the index a compaction folds (copied)")
    kp.add_argument("--trials", type=int, default=30)
    kp.add_argument("--seed", type=int, default=0)
    wp = sub.add_parser("writers")
    wp.add_argument("--index", default="consults")
    f = sub.add_parser("filters")
    f.add_argument("--index", default="consults")
    f.add_argument("--queries", type=int, default=50)
    f.add_argument("-k", type=int, default=5)
    f.add_argument("--delta", type=int, default=0, help="first add this many records (a copy)")
    f.add_argument("--deletes", type=int, default=250)
    o = sub.add_parser("open")
    o.add_argument("--size", type=int, default=1_000_000)
    o.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    HEADER.update(provenance.header())
    parts = {"writes": writes, "search": search, "recall": recall, "kills": kills,
             "writers": writers, "filters": filters, "open": open_time}  # fmt: skip
    parts[args.part](args)


if __name__ == "__main__":
    main()
