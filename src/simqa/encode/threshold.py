"""The score under which simqa answers that nothing similar is known (``min_score``).

A cosine threshold only means something for the model that produced the scores, so each
index records its own in the manifest when it is built: the calibrated value below for
the packaged model, the value ``simqa tune --calibrate-on`` stored beside a fine-tuned
model, or whatever ``simqa build --min-score`` was given. ``simqa calibrate`` measures one
on labelled validation pairs (``simqa.evaluate.calibrate``).
"""

from __future__ import annotations

import json
from pathlib import Path

#: the share of labelled similar pairs a calibrated threshold keeps
KEEP_SIMILAR = 0.95

#: ``calibrate`` of all-MiniLM-L6-v2 on the MEDIQA 2019 RQE validation pairs; reproduce with
#: ``simqa calibrate`` on that file (MEDIQA2019-Task2-RQE-ValidationSet-AMIA2016.xml)
CALIBRATED = {"all-MiniLM-L6-v2": 0.36}

#: passing this (or anything lower) keeps every hit
KEEP_ALL = -1.0


def default_min_score(model_name: str) -> float | None:
    """The calibrated threshold known for a model, or None when there is none."""
    if model_name in CALIBRATED:
        return CALIBRATED[model_name]
    record = Path(model_name) / "simqa_training.json"
    if record.is_file():
        try:
            value = json.loads(record.read_text(encoding="utf-8")).get("min_score")
        except (OSError, ValueError):
            return None
        return float(value) if isinstance(value, int | float) else None
    return None
