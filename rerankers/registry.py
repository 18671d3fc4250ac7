"""The rerankers a pipeline's textual form can name (``bm25%100 >> icr%10``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pursuit.indexes.docstore import DocStore
from pursuit.rerankers.blockrank.reranker import BlockRankReranker
from pursuit.rerankers.icr import ICRReranker
from pursuit.rerankers.listwise import ListwiseReranker
from pursuit.rerankers.ql import QLReranker
from pursuit.retrievers.stage import Stage


def reranker_stages(store: DocStore | None, *,
                    dtype: str = "auto") -> dict[str, Callable[..., Stage]]:
    """Constructors of every reranker, fetching document texts from ``store`` when needed.

    Each takes constant keyword options, e.g. ``icr(model='qwen2.5-coder-1.5b')``, and its
    stage's name shows exactly the options given. ``dtype`` (the settings' dtype) is the
    model dtype of those that name none; ``icr(dtype='float32')`` wins. Being a default, it
    is not part of a name: ``icr`` is named ``icr`` whatever the settings' dtype.

    Example:
        >>> stages = index_stages(index) | reranker_stages(index.store)  # doctest: +SKIP
        >>> parse_pipeline("bm25%100 >> icr%10", stages)  # doctest: +SKIP
    """
    makers: dict[str, Callable[..., Stage]] = {
        "icr": ICRReranker.from_options, "blockrank": BlockRankReranker.from_options,
        "ql": QLReranker.from_options, "listwise": ListwiseReranker.from_options}
    return {name: _bound(make, store, dtype) for name, make in makers.items()}


def _bound(make: Callable[..., Stage], store: DocStore | None,
           dtype: str) -> Callable[..., Stage]:
    # A closure, not functools.partial: partial would let the pipeline text override
    # default_dtype, which is a setting, not an option.
    def stage(**options: Any) -> Stage:
        return make(store, default_dtype=dtype, **options)
    return stage
