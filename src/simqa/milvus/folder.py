"""A Milvus-backed index folder: it keeps only ``manifest.json`` (model, URI, collection,
index type, tuned search parameters, measured recall), the writer lock and, while a write
is under way, its undo journal. Everything a query needs is in Milvus; the collection's own
description repeats the model, dimension and fields, so a mismatched manifest is caught.
"""


from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import simqa.index.layout as layout
from simqa.errors import ModelMismatch, SimqaError
from simqa.index.manifest import FILENAME, Manifest
from simqa.milvus.client import Connection

UNDO = "undo.json"
#: bytes of rows per insert/upsert request (Milvus refuses messages past 64 MB)
BATCH_BYTES = 8 * 2**20
ALL_FIELDS = [
    "vid",
    "id",
    "vector",
    "department",
    "source",
    "ask_iso",
    "tags",
    "text_hash",
    "record",
]



def is_milvus_index(root: Path) -> bool:
    """True for an index folder whose manifest points at Milvus."""
    path = Path(root) / FILENAME
    if not path.is_file() or (Path(root) / layout.CURRENT).exists():
        return False
    try:
        return json.loads(path.read_text()).get("vector_index", {}).get("kind") == "milvus"
    except (OSError, ValueError, AttributeError):
        return False

def save_manifest(root: Path, manifest: Manifest) -> None:
    """Replace the folder's manifest atomically (it names the collection readers use)."""
    manifest.files = {}
    tmp = root / f".{FILENAME}.{uuid.uuid4().hex}"
    with tmp.open("w") as handle:
        handle.write(json.dumps(asdict(manifest), indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / FILENAME)

def load_manifest(root: Path) -> Manifest:
    manifest = Manifest.load(root)
    if manifest.vector_index.get("kind") != "milvus":
        raise SimqaError(f"{root} is not a Milvus-backed index")
    return manifest

def alias_for(root: Path) -> str:
    """The collection alias of an index folder: ``simqa_`` + its name, made Milvus-safe."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(root).resolve().name)
    return f"simqa_{name}"[:200]

def description(manifest: Manifest) -> str:
    """What the collection itself records, so any reader can check it was built alike."""
    return json.dumps(
        {
            "simqa": {
                "model": manifest.model,
                "dim": manifest.dim,
                "embed_fields": manifest.embed_fields,
                "encoder": manifest.encoder,
            }
        }
    )

def check_collection(conn: Connection, collection: str, manifest: Manifest) -> None:
    """ModelMismatch when the collection was built with another model, dimension or text."""
    info = conn.call("describe_collection", collection)
    try:
        built = json.loads(info.get("description") or "{}")["simqa"]
    except (ValueError, KeyError, TypeError):
        raise SimqaError(
            f"collection {collection} at {conn.uri} was not written by simqa; refusing to use it"
        ) from None
    dim = next((f["params"].get("dim") for f in info["fields"] if f["name"] == "vector"), None)
    mine = (manifest.model, manifest.dim, manifest.embed_fields)
    theirs = (built.get("model"), int(dim or built.get("dim") or 0), built.get("embed_fields"))
    if mine != theirs:
        raise ModelMismatch(
            f"collection {collection} at {conn.uri} holds {theirs[1]}-dimensional vectors of "
            f"{theirs[0]} ({theirs[2]}), this index's manifest says {mine[1]}-dimensional "
            f"{mine[0]} ({mine[2]}); rebuild it with simqa build --milvus"
        )

def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with tmp.open("w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)

def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
