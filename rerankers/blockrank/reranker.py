"""BlockRank: rerank by a middle layer's attention under a block-sparse mask (``docs/methods.md`` §2).

Each document is its own block that sees only the instruction and itself, with position
ids that restart at the end of the instruction, so its keys and values depend on nothing
else — the cost is linear in the number of documents and the scores do not depend on the
order of the candidates. The query block comes last and sees everything; the prefill stops
at layer ``l*`` where the signal tokens' attention to document tokens is summed per
document. Zero-shot the signal is the query text's own tokens (``signal="query"``); the
paper's answer-prefix token (``signal="answer"``) is for fine-tuned models. Because the query is outside the instruction block, every document's keys and
values are cached (:class:`~pursuit.rerankers.blockrank.doc_cache.DocKVCache`): a second query over
the same pool computes only its own block.

Zero-shot quality, by signal and layer, is measured by ``bench/blockrank_layers.py`` and
``bench/rerank.py`` (BENCHMARKS.md); the paper's quality needs a fine-tuned model
(:mod:`pursuit.rerankers.blockrank.finetune`).

Example:
    >>> stage = BlockRankReranker(store=index.store)          # doctest: +SKIP
    >>> (bm25 % 50 >> stage % 10).search("what causes tides?")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc, Query
from pursuit.rerankers.base import Reranker, cached_lm, split_options
from pursuit.rerankers.blockrank.blocks import build_layout, check_signal
from pursuit.rerankers.blockrank.doc_cache import DocKVCache
from pursuit.rerankers.blockrank.forward import PATHS, BlockForward, score_layout

if TYPE_CHECKING:
    from pursuit.retrievers.lm.causal import CausalLM

#: Every option of the textual form and its default: the one source of the defaults, which
#: the constructor uses too. A stage's name shows the options its text gave.
DEFAULTS: dict[str, Any] = {"model": None, "layer": "auto", "max_doc_tokens": 384,
                            "cache_bytes": 512 * 2**20, "path": "auto", "signal": "query",
                            "signal_tokens": 1, "batch_size": 16, "dtype": "auto",
                            "device": "auto"}

#: Zero-shot scoring layers chosen by measurement (``bench/blockrank_layers.py``: the query
#: text's tokens as signal, chosen on SciFact test claims and tested on as many others —
#: 100 + 100 for the 0.5B, 50 + 50 for the 1.5B, whose best layer is its middle one;
#: BENCHMARKS.md). A model not listed scores at its middle layer.
MEASURED_LAYERS: dict[str, int] = {"qwen2.5-coder-0.5b": 11, "qwen2.5-coder-1.5b": 14}


def resolve_layer(layer: int | str, n_layers: int, model_id: str | None = None) -> int:
    """The 0-based scoring layer: an int (negative counts from the top), ``"middle"``, or
    ``"auto"`` (the measured layer of ``model_id`` in :data:`MEASURED_LAYERS`, else the
    middle)."""
    if layer == "auto":
        layer = MEASURED_LAYERS.get(model_id or "", "middle")
    if layer == "middle":
        return n_layers // 2
    if isinstance(layer, str | bool):
        raise PursuitError(f"layer={layer!r} is not a layer; use an integer, 'middle' or "
                           "'auto'")
    resolved = layer + n_layers if layer < 0 else layer
    if not 0 <= resolved < n_layers:
        raise PursuitError(f"layer={layer} is outside the model's {n_layers} layers "
                           f"(0..{n_layers - 1})")
    return resolved


def resolve_path(path: str, device: torch.device) -> str:
    """``"auto"`` is the padded-batch SDPA path, the faster one on the CPU and the GPU
    (``bench/blockrank.py`` and ``bench/gpu_rerank.py``; BENCHMARKS.md, ``docs/gpu.md``)."""
    if path == "auto":
        return "batched"
    if path not in PATHS:
        raise PursuitError(f"path={path!r} is not one of auto, {', '.join(PATHS)}")
    return path


@dataclass
class BlockRankStats:
    """Work done by the last :meth:`BlockRankReranker.score` call.

    Attributes:
        doc_tokens: Document tokens run through the model (cache misses).
        query_tokens: Query-block tokens run through the model.
        cache_hits: Document blocks served from the cache.
    """

    doc_tokens: int = 0
    query_tokens: int = 0
    cache_hits: int = 0


class BlockRankReranker(Reranker):
    """Zero-shot BlockRank reranker with a document-KV cache.

    Args:
        lm: A loaded :class:`~pursuit.retrievers.lm.causal.CausalLM`; default: load ``model``.
        store: Where document text comes from when candidates carry none.
        model: Packaged name, hub id or path (default: the packaged Qwen2.5-Coder-0.5B).
        layer: Scoring layer ``l*`` (0-based, negative from the top), ``"middle"``
            (``num_layers // 2``) or ``"auto"`` (the layer measured best for the model,
            :data:`MEASURED_LAYERS`, else the middle); the layers above it are never run.
        max_doc_tokens: Token budget of one document block (the paper evaluates at 384).
        cache_bytes: Byte budget of the document-KV cache (``0`` disables it).
        path: ``"auto"`` / ``"batched"`` (documents padded into one SDPA batch), ``"mask"``
            (one boolean-masked sequence per group), ``"flex"`` (FlexAttention, compiled
            once per 128-token length bucket; optional).
        signal: Which tokens' attention scores documents: ``"query"`` (the query text's
            own tokens; zero-shot this is far better, BENCHMARKS.md) or ``"answer"`` (the
            last ``signal_tokens`` of the answer prefix, as the paper reads a fine-tuned
            model; use it for models from :mod:`pursuit.rerankers.blockrank.finetune`).
        signal_tokens: How many tokens at the end of the prompt score documents
            (``signal="answer"`` only).
        batch_size: Documents per forward group (bounds peak memory).
        dtype: Model dtype when loading (``"auto"``: bfloat16 where the hardware computes
            it natively, else float32; see :func:`~pursuit.retrievers.lm.dtypes.resolve_dtype`).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` when loading.
        options: The options the pipeline text named (what :attr:`name` shows); ``None``
            names the arguments that differ from their defaults.

    Example:
        >>> reranker = BlockRankReranker(store=index.store, layer=12)   # doctest: +SKIP
        >>> reranker.rerank("what causes tides?", bm25.search("tides")).doc_ids()[:3]  # doctest: +SKIP
    """

    label = "blockrank"

    def __init__(self, lm: CausalLM | None = None, *, store: DocStore | None = None,
                 model: str | None = DEFAULTS["model"], layer: int | str = DEFAULTS["layer"],
                 max_doc_tokens: int | None = DEFAULTS["max_doc_tokens"],
                 cache_bytes: int = DEFAULTS["cache_bytes"], path: str = DEFAULTS["path"],
                 signal: str = DEFAULTS["signal"], signal_tokens: int = DEFAULTS["signal_tokens"],
                 batch_size: int = DEFAULTS["batch_size"], dtype: str = DEFAULTS["dtype"],
                 device: str = DEFAULTS["device"],
                 options: Mapping[str, Any] | None = None) -> None:
        if options is None:  # built in code: name the arguments that differ from the defaults
            given = {"model": model, "layer": layer, "max_doc_tokens": max_doc_tokens,
                     "cache_bytes": cache_bytes, "path": path, "signal": signal,
                     "signal_tokens": signal_tokens, "batch_size": batch_size, "dtype": dtype,
                     "device": device}
            options = {k: v for k, v in given.items() if v != DEFAULTS[k]}
        super().__init__(store=store, options=options)
        if batch_size < 1:
            raise PursuitError(f"batch_size must be >= 1, got {batch_size}")
        self.lm = lm if lm is not None else cached_lm(model, dtype=dtype, device=device)
        self.layer = resolve_layer(layer, len(BlockForward(self.lm.model, 0).layers),
                                   self.lm.model_id)
        self.engine = BlockForward(self.lm.model, self.layer)
        self.path = resolve_path(path, self.engine.device)
        check_signal(signal)  # before any query, not at the first one
        self.max_doc_tokens, self.signal, self.signal_tokens = max_doc_tokens, signal, signal_tokens
        self.batch_size = batch_size
        self.cache = DocKVCache(cache_bytes)
        self.stats = BlockRankStats()

    @classmethod
    def from_options(cls, store: DocStore | None = None, *, default_dtype: str = "auto",
                     **options: Any) -> BlockRankReranker:
        """Build ``blockrank`` for the textual pipeline form (``bm25%50 >> blockrank(layer=12)``).

        Args:
            store: The index's document store.
            default_dtype: The model dtype when ``options`` names none (the settings' dtype);
                unlike the options it is not part of the stage's name.
            **options: Keyword options of :class:`BlockRankReranker` (constants only).

        Example:
            >>> stage = BlockRankReranker.from_options(index.store, layer=12)  # doctest: +SKIP
            >>> stage.name
            "blockrank(layer=12)"
        """
        opts, named = split_options("blockrank", {**DEFAULTS, "dtype": default_dtype}, options)
        return cls(store=store, **opts, options=named)

    def score(self, query: str, docs: Sequence[Doc]) -> np.ndarray:
        """Attention mass of each document (same order as ``docs``; they sum to 1).

        Example:
            >>> reranker.score("tides", [Doc("a", "The moon pulls the sea.")])  # doctest: +SKIP
            array([1.], dtype=float32)
        """
        if not docs:
            return np.zeros(0, dtype=np.float32)
        layout = build_layout(self.lm, query, docs, max_doc_tokens=self.max_doc_tokens,
                              signal=self.signal, signal_tokens=self.signal_tokens)
        with torch.inference_mode():
            run = score_layout(self.engine, layout, model_id=self.lm.model_id, path=self.path,
                               cache=self.cache, batch_size=self.batch_size)
        self.stats = BlockRankStats(run.doc_tokens, run.query_tokens, run.hits)
        return run.scores.cpu().numpy()

    def score_docs(self, query: Query, docs: Sequence[Doc]) -> np.ndarray:
        """Relevance of each document to ``query``: its BlockRank attention mass."""
        return self.score(query.text, docs)
