"""What every backend's writes share: reading the sources, the options an append may not
change, the default threshold a write records, and the stamps a manifest carries.

One copy for the embedded index (``index.build``) and Milvus (``milvus.write``), so the two
refuse the same appends with the same words.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from simqa.encode.encoder import DEFAULT_ENCODER
from simqa.encode.models import resolve_model
from simqa.encode.threshold import default_min_score
from simqa.errors import ModelMismatch, SimqaError
from simqa.index.manifest import Manifest
from simqa.records import Consultation

#: what a build embeds by default, and the recall@10 approximate search is tuned to
DEFAULT_FIELDS = "title+question"
DEFAULT_RECALL = 0.95


def records_from(
    sources: Iterable[Consultation | str | Path],
    fmt: str | None = None,
    strict: bool = False,
    report: Any = None,
) -> Iterator[Consultation]:
    """The records to write: ``Consultation`` objects as given, files and folders loaded by
    ``simqa.ingest`` (only when some are given: ingest is not needed otherwise)."""
    paths: list[str | Path] = []
    for item in sources:
        if isinstance(item, Consultation):
            yield item
        else:
            paths.append(item)
    if paths:
        from simqa.ingest import load

        yield from load(paths, format=fmt, strict=strict, report=report)


def refuse_changes(
    manifest: Manifest, fixed: Mapping[str, Any], root: Path, index_type: str | None
) -> None:
    """Raise when an append asks for an option the index was built with otherwise.

    ``fixed`` holds what the user gave (None: not given); ``index_type`` is the index's own
    (backends name it in their own case, so it is compared case-insensitively).
    """
    model = fixed.get("model")
    if model is not None and resolve_model(model)[0] != manifest.model:
        raise ModelMismatch(
            f"index {root} was built with model {manifest.model}, not {model}; an append "
            "embeds with the index's model (build a new index to change it)"
        )
    have = {
        "fields": manifest.embed_fields,
        "index_type": index_type,
        "encoder": manifest.encoder,
        "recall": manifest.recall.get("target"),
    }
    for option, value in fixed.items():
        if option == "model" or value is None:
            continue
        if option == "encoder" and value == DEFAULT_ENCODER:
            continue
        if option == "index_type" and str(value).lower() == str(index_type).lower():
            continue
        if option == "memory" or value != have.get(option):
            flag = "--" + option.replace("_", "-")
            raise SimqaError(
                f"{flag} cannot change on an append (the index has "
                f"{have.get(option, 'its own')}); build a new index to change it"
            )


def min_score_for(
    given: float | str | None, model: str, previous: Manifest | None = None
) -> float | None:
    """The threshold a write records: ``given``; for ``"auto"`` the index's own on an append,
    else the one calibrated for the model (None when it has none)."""
    if given != "auto":
        return None if given is None else float(given)
    if previous is not None:
        return previous.min_score
    return default_min_score(model)


def last_of_each_id(records: Iterable[Consultation]) -> Iterator[Consultation]:
    """Each id once, the last one given winning (what an upsert of the same id twice does)."""
    last: dict[str, Consultation] = {}
    for record in records:
        last.pop(record.id, None)
        last[record.id] = record
    yield from last.values()


def now() -> str:
    """A manifest's time stamp: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@functools.cache
def simqa_version() -> str:
    return version("simqa")  # parses the package metadata: ms, so once per process
