"""The encoder of :mod:`simqa.encode.encoder`, run by onnxruntime from the int8 export that
:mod:`simqa.encode.onnx_export` makes once: faster per query, and no torch at query time
(only onnxruntime, tokenizers and numpy are loaded when the export exists).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import simqa.files as files
from simqa.encode.models import model_dir
from simqa.encode.onnx_export import (
    BUNDLED,
    EXPORT_FORMAT,
    META,
    PRECISIONS,
    RECIPE,
    TOKENIZER,
    export,
    model_key,
    prune_cache,
)  # fmt: skip
from simqa.errors import SimqaError


def _pool(hidden: np.ndarray, mask: np.ndarray, modes: list[str]) -> np.ndarray:
    """Sentence vectors from token vectors as ST's Pooling makes them (batches are right-padded)."""
    maskf = mask[:, :, None].astype(np.float32)
    lengths = mask.sum(axis=1)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(np.where(maskf > 0, hidden, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = np.maximum(lengths[:, None].astype(np.float32), 1e-9)
            total = (hidden * maskf).sum(axis=1)
            out.append(total / (count if mode == "mean" else np.sqrt(count)))
        elif mode == "weightedmean":
            weights = maskf * np.arange(1, hidden.shape[1] + 1, dtype=np.float32)[None, :, None]
            out.append((hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))
        else:  # lasttoken
            last = np.maximum(lengths - 1, 0)
            out.append(hidden[np.arange(len(hidden)), last])
    return out[0] if len(out) == 1 else np.concatenate(out, axis=1)


class OnnxEncoder:
    """Drop-in for :class:`simqa.encode.encoder.Encoder`, run by onnxruntime from a cached export.

    ``precision`` is ``int8`` (quantised, the fast one) or ``fp32`` (the exact export).
    """

    kind = "onnx"
    #: recorded in an index's manifest: vectors of another export recipe differ slightly
    recipe = f"onnx-{EXPORT_FORMAT}-{RECIPE}"

    def __init__(
        self,
        model: str | None = None,
        threads: int | None = None,
        precision: str = "int8",
        cache_dir: Path | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise SimqaError(f"unknown onnx precision {precision!r}; choose int8 or fp32")
        self.name, path = model_dir(model)
        self.precision = precision
        if cache_dir is None and (path / BUNDLED / META).is_file():
            cache_dir = path / BUNDLED  # an export shipped inside the model folder
        self.dir = Path(cache_dir) if cache_dir else files.cache_dir() / "onnx" / model_key(path)
        self.path = self.dir / PRECISIONS[precision]
        meta = self._read_meta()
        if meta is None or not self.path.exists():
            export(model, self.dir, quantize=precision == "int8")
            meta = self._read_meta()
            if meta is None:
                raise SimqaError(f"onnx export in {self.dir} left no usable {META}")
            if not cache_dir:
                prune_cache(self.dir)
        self.dim = int(meta["dim"])
        self.max_tokens = int(meta["max_seq_length"])
        self._inputs: list[str] = list(meta["inputs"])
        self._pooling: list[str] = list(meta["pooling"])
        self._normalize = bool(meta["normalize"])
        self._prompt: str = meta.get("prompt", "")
        self._pad_id = int(meta["pad_id"])

        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.dir / TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.session = self._session(threads)
        self._output = self.session.get_outputs()[0].name
        #: many texts run on this many threads, one text per run each (see ``encode``)
        self.workers = int(threads or os.cpu_count() or 1)
        self._bulk: Any = None

    def _session(self, threads: int | None) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a damaged cache file: onnxruntime raises its own types
            raise SimqaError(
                f"cannot load {self.path} ({type(exc).__name__}); delete {self.dir} to re-export"
            ) from None

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads((self.dir / META).read_text())
        except (OSError, ValueError):
            return None
        if meta.get("format") != EXPORT_FORMAT or meta.get("recipe") != RECIPE:
            return None
        return meta

    def _run(self, ids: list[int], type_ids: list[int], session: Any = None) -> np.ndarray:
        """One forward pass over one text, unpadded; returns its pooled (normalised) vector.

        One text per call on purpose: dynamic int8 quantisation takes each activation's
        scale over the whole input tensor, so in a padded batch a text's vector would
        depend on the other texts (and their padding) it happened to share the batch with.
        """
        input_ids = np.asarray([ids], dtype=np.int64)
        mask = np.ones_like(input_ids)
        arrays = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "token_type_ids": np.asarray([type_ids], dtype=np.int64),
        }
        session = session or self.session
        hidden = session.run([self._output], {n: arrays[n] for n in self._inputs})[0]
        vector = _pool(hidden, mask, self._pooling)
        if self._normalize:
            vector /= np.maximum(np.linalg.norm(vector, axis=1, keepdims=True), 1e-12)
        return vector[0]

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, so inner product is cosine.

        Each text is run alone (see ``_run``), so its vector is the same whichever texts
        it is encoded with: a build stores what a query of the same text computes. Many
        texts run on ``workers`` threads at once, each run on one thread of a second
        session (one-thread runs give the same vectors, bit for bit, and two of them at once
        use two cores better than one run split over both); ``batch_size`` only sets how
        often the progress bar moves.
        """
        texts = [self._prompt + str(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 1:  # the query path
            enc = self.tokenizer.encode(texts[0])
            out[0] = self._run(enc.ids, enc.type_ids)
            return out
        step = max(1, int(batch_size))
        starts: Any = range(0, len(texts), step)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches", total=-(-len(texts) // step))
        pool = None
        if self.workers > 1 and len(texts) > self.workers:
            from concurrent.futures import ThreadPoolExecutor

            if self._bulk is None:
                self._bulk = self._session(1)
            pool = ThreadPoolExecutor(self.workers)
        try:
            for start in starts:
                chunk = self.tokenizer.encode_batch(texts[start : start + step])
                if pool is None:
                    rows = [self._run(e.ids, e.type_ids) for e in chunk]
                else:
                    rows = list(pool.map(lambda e: self._run(e.ids, e.type_ids, self._bulk), chunk))
                out[start : start + len(rows)] = rows
        finally:
            if pool is not None:
                pool.shutdown()
        return out
