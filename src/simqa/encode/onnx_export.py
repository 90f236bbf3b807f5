"""Exporting a sentence-transformers model to int8 ONNX, once, offline: what
:mod:`simqa.encode.onnx_runtime` then runs without torch.

The sentence-transformers model is exported once to ONNX (``torch.onnx.export``) and its
MatMul weights quantised to int8 (``onnxruntime.quantization.quantize_dynamic``), offline from
the installed weights. The export lands in a cache folder keyed by the model's files
(``$SIMQA_CACHE/onnx/<key>/``, default ``~/.cache/simqa/onnx/<key>/``) beside the fast
tokenizer and a small ``simqa_onnx.json`` with what pooling needs; later loads read only those
files with onnxruntime, tokenizers and numpy.

Recipe (measured in benchmarks/bench_encoder.py, ``recipes``): onnxruntime's transformer
optimizer first fuses the traced graph (attention, embedding + layer norm, skip + layer norm,
bias + GELU), so that quantisation turns each attention block into one QAttention and the
int8 attention kernel runs; then every MatMul gets int8 weights with one scale per output
channel, except the first layer's feed-forward down-projection, whose input carries the
largest activation outliers, and stays float32, as do the embedding tables. Format 1 (no
fusion, all six down-projections in float) was more faithful to torch but slower; each
recipe's cosine to torch, MQP recall@1 and CPU per query are in
benchmarks/results/encoder.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import simqa.files as files
from simqa.encode.models import model_dir
from simqa.errors import SimqaError

# Bump when the exported files or the recipe change, so old cache folders are not reused.
EXPORT_FORMAT = 2
RECIPE = "fused-attention-int8-per-channel-first-ffn-down-fp32"
META = "simqa_onnx.json"
TOKENIZER = "tokenizer.json"
FP32 = "model.onnx"
INT8 = "model.int8.onnx"
PRECISIONS = {"int8": INT8, "fp32": FP32}
#: a model folder may carry its own export here (``simqa adapt`` writes one), used before the cache
BUNDLED = "onnx"
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_SKIP_DIRS = {".git", "onnx", "openvino", "__pycache__"}


def model_key(path: Path) -> str:
    """A short hash of the model folder's path and its files' sizes and times: changes re-export."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}:{RECIPE}:{path.resolve()}".encode())
    for root, dirs, names in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for file in sorted(names):
            full = Path(root, file)
            stat = full.stat()
            digest.update(f"\n{full.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def default_dir(model: str | None) -> Path:
    """The cache folder that holds (or will hold) the export of ``model``."""
    return files.cache_dir() / "onnx" / model_key(model_dir(model)[1])


def prune_cache(keep: Path) -> list[Path]:
    """Delete cached exports made stale by ``keep``: same model files since changed, or gone.

    Folders keyed by a model's path and file times pile up as models are retrained or
    temporary copies come and go; a folder without metadata may be an export in progress
    and is left alone. Returns the folders removed.
    """
    try:
        source = json.loads((keep / META).read_text())["source"]
        siblings = [d for d in keep.parent.iterdir() if d.is_dir() and d != keep]
    except (OSError, ValueError, KeyError):
        return []
    removed = []
    for folder in siblings:
        try:
            other = json.loads((folder / META).read_text())["source"]
        except (OSError, ValueError, KeyError):
            continue
        if other == source or not Path(other).exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it only once fully written."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is as readable as any other
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _pipeline(st: Any, model: str | None) -> tuple[Any, list[str], bool]:
    """(transformer module, pooling modes, normalize) of a plain ST text-embedding pipeline."""
    modules = list(st)
    kinds = [type(m).__name__ for m in modules]
    transformer = modules[0] if modules else None
    if transformer is None or not hasattr(transformer, "auto_model"):
        raise SimqaError(f"model {model!r} does not start with a Transformer module")
    task = getattr(transformer, "transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise SimqaError(f"model {model!r} is a {task} model; the onnx encoder needs an encoder")
    modes: list[str] = ["cls"]  # ST's default when a model has no Pooling module
    normalize = False
    for module, kind in zip(modules[1:], kinds[1:], strict=True):
        if kind == "Pooling":
            config = module.get_config_dict()
            mode = config.get("pooling_mode", "mean")
            modes = [mode] if isinstance(mode, str) else list(mode)
            if not config.get("include_prompt", True) and st.default_prompt_name:
                raise SimqaError(f"model {model!r} pools without its prompt: use the torch encoder")
        elif kind == "Normalize":
            normalize = True
        else:
            raise SimqaError(
                f"model {model!r} has a {kind} module the onnx encoder cannot run: "
                "use the torch encoder"
            )
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown:
        raise SimqaError(f"model {model!r} uses pooling {unknown[0]!r}: use the torch encoder")
    return transformer, modes, normalize


def _export_graph(transformer: Any, target: Path) -> list[str]:
    """Trace the transformer to ONNX with dynamic batch and sequence axes; return input names."""
    import torch

    auto_model = transformer.auto_model.eval()
    # Eager attention traces to plain MatMul/Softmax, which onnxruntime fuses; the SDPA path
    # may drop the mask when the example batch has no padding.
    with contextlib.suppress(Exception):
        auto_model.set_attn_implementation("eager")
    tokenizer = transformer.tokenizer
    accepted = inspect.signature(auto_model.forward).parameters
    names = [
        n
        for n in ("input_ids", "attention_mask", "token_type_ids")
        if n in tokenizer.model_input_names and n in accepted
    ]
    if "input_ids" not in names or "attention_mask" not in names:
        raise SimqaError("the model's tokenizer gives no input_ids/attention_mask")
    # Two texts of different lengths, so the traced graph carries a real padding mask.
    example = tokenizer(
        ["a short one", "a somewhat longer example sentence to trace"],
        padding=True,
        return_tensors="pt",
    )

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = auto_model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Hidden().eval(),
            tuple(example[n] for n in names),
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, graphs fuse well
        )
    return names


def down_projections(source: Path) -> list[str]:
    """MatMul nodes whose constant weight narrows its input (FFN outputs), in graph order."""
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and len(shapes.get(node.input[1], [])) == 2
        and shapes[node.input[1]][0] > shapes[node.input[1]][1]
    ]


def _fuse(source: Path, target: Path, heads: int, hidden: int) -> None:
    """onnxruntime's BERT fusions (Attention, EmbedLayerNormalization, SkipLayerNormalization,
    BiasGelu) on the traced graph; a graph they do not recognise is written back as it is."""
    from onnxruntime.transformers.optimizer import optimize_model

    logging.disable(logging.WARNING)  # it logs each fusion it could not apply
    try:
        fused = optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden)
        fused.save_model_to_file(str(target))
    finally:
        logging.disable(logging.NOTSET)


def _quantize(source: Path, target: Path) -> None:
    """int8 weights, one scale per output channel, for every MatMul and fused Attention but
    the first feed-forward down-projection; embeddings and layer norms stay float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice to pre-process goes to the root logger
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=down_projections(source)[:1],
            # fused ops (contrib domain) leave shape inference without output types
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.disable(logging.NOTSET)


def export(model: str | None, out_dir: Path, quantize: bool = True) -> Path:
    """Export ``model`` to ``out_dir`` (fp32 ONNX, int8 if ``quantize``); return the one to load.

    Needs torch and sentence-transformers; each file is written to a temporary name and moved
    into place, so a reader never sees half a model.
    """
    name, path = model_dir(model)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise SimqaError(
            f"cannot load model {model!r} from {path} ({type(exc).__name__})"
        ) from None
    transformer, modes, normalize = _pipeline(st, model)
    tokenizer = transformer.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise SimqaError(f"model {model!r} has no fast tokenizer: use the torch encoder")
    prompt = st.prompts.get(st.default_prompt_name, "") if st.default_prompt_name else ""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with _atomic(out_dir / TOKENIZER) as tmp:
            backend.save(str(tmp))
        with tempfile.TemporaryDirectory(dir=out_dir) as work:
            traced = Path(work) / "traced.onnx"
            inputs = _export_graph(transformer, traced)
            config = transformer.auto_model.config
            heads = int(getattr(config, "num_attention_heads", 0) or 0)
            hidden = int(getattr(config, "hidden_size", 0) or 0)
            with _atomic(out_dir / FP32) as tmp:
                _fuse(traced, tmp, heads, hidden)
        meta = {
            "format": EXPORT_FORMAT,
            "recipe": RECIPE,
            "name": name,
            "source": str(path),
            "dim": int(st.get_embedding_dimension()),
            "max_seq_length": int(st.max_seq_length),
            "inputs": inputs,
            "pad_id": int(tokenizer.pad_token_id or 0),
            "pooling": modes,
            "normalize": normalize,
            "prompt": prompt,
        }
        with _atomic(out_dir / META) as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        if quantize:
            with _atomic(out_dir / INT8) as tmp:
                _quantize(out_dir / FP32, tmp)
    except OSError as exc:
        raise SimqaError(
            f"cannot write the onnx model to {out_dir} ({exc.strerror}); "
            "set SIMQA_CACHE to a writable folder"
        ) from None
    return out_dir / (INT8 if quantize else FP32)
