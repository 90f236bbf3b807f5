"""House rules that code review misses: no import cycles (a package's ``__init__`` counted as
the module it is), the query path free of training and evaluation code and of torch, and
importing simqa leaves the host process's environment alone."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "simqa"
#: what answers a query or a write; none of it may reach training, evaluation or the CLI
ENGINE = ("simqa.index", "simqa.vectors", "simqa.encode", "simqa.box", "simqa.serve",
          "simqa.ingest", "simqa.milvus", "simqa.records", "simqa.errors",
          "simqa.files")  # fmt: skip
OFF_THE_QUERY_PATH = ("simqa.learn", "simqa.evaluate", "simqa.cli")


def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of simqa: name -> (file, is a package's __init__)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the simqa modules importing it runs: its imports (at the top or inside
    functions), and the ``__init__`` of every package on the way to them that it is not
    itself inside (``import simqa.a.b`` runs ``simqa/a/__init__.py`` first)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, (path, is_package) in mods.items():
        here = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                if not target.startswith("simqa"):
                    continue
                found = resolve(target)
                if not found or found == name:
                    continue
                graph[name].add(found)
                parts = found.split(".")
                for i in range(2, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in mods and not (name == parent or name.startswith(parent + ".")):
                        graph[name].add(parent)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_sees_package_init_edges():
    graph = import_graph()
    assert len(graph) == len(list(PACKAGE.rglob("*.py")))
    # importing simqa.index.hits from outside runs simqa/index/__init__.py
    assert "simqa.index" in graph["simqa.box.render"]


def test_a_cycle_through_a_package_init_is_found():
    graph = {"p": {"p.a"}, "p.a": {"q.b"}, "q.b": {"p"}, "q": set()}
    assert cycles(graph) == [["p", "p.a", "q.b"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_engine_reaches_no_training_evaluation_or_cli_code():
    graph = import_graph()
    engine = [m for m in graph if m.startswith(ENGINE)]
    assert len(engine) > 40  # every module of these packages, not a hand-picked few
    for module in engine:
        bad = {m for m in reaches(graph, module) if m.startswith(OFF_THE_QUERY_PATH)}
        assert not bad, f"{module} reaches {sorted(bad)}"


def _fresh_python(code: str, tmp_path: Path) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_opening_searching_and_rendering_import_no_torch_nor_training(consult_index, tmp_path):
    found = _fresh_python(
        f"""
import json, sys
import simqa
index = simqa.open_index({str(consult_index.root)!r})
box = simqa.Box.for_question(index, "my legs jerk when I am falling asleep", k=4)
similar = simqa.Box.for_id(index, box.hits[0].id, k=4)
text = simqa.render(box, "html") + simqa.render(similar, "text")
heavy = ("torch", "transformers", "sentence_transformers", "simqa.learn", "simqa.evaluate",
         "simqa.cli")
print(json.dumps({{"hits": len(box.hits), "loaded": sorted(
    m for m in sys.modules if m.startswith(heavy))}}))
""",
        tmp_path,
    )
    assert found["hits"] == 4
    assert found["loaded"] == []


def test_importing_and_using_simqa_changes_no_environment_variable(consult_index, tmp_path):
    found = _fresh_python(
        f"""
import json, os
before = dict(os.environ)
import simqa
import simqa.box.render, simqa.index, simqa.serve
index = simqa.open_index({str(consult_index.root)!r})
index.search("leg cramps at night", k=2)
after = dict(os.environ)
print(json.dumps(sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))))
""",
        tmp_path,
    )
    assert found == []
