"""The rerankers a pipeline's textual form can name (``bm25%100 >> icr%10``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from pursuit.indexes.docstore import DocStore
from pursuit.rerankers.blockrank.reranker import make_blockrank
from pursuit.rerankers.icr import make_icr
from pursuit.rerankers.listwise import make_listwise
from pursuit.rerankers.ql import make_ql
from pursuit.retrievers.stage import Stage


def reranker_stages(store: DocStore | None, *,
                    dtype: str = "auto") -> dict[str, Callable[..., Stage]]:
    """Constructors of every reranker, fetching document texts from ``store`` when needed.

    Each takes constant keyword options, e.g. ``icr(model='qwen2.5-coder-1.5b')``.
    ``dtype`` is the model dtype of those that name none (``icr(dtype='float32')`` wins);
    one other than ``"auto"`` shows in the stage's name, like any changed option.

    Example:
        >>> stages = index_stages(index) | reranker_stages(index.store)  # doctest: +SKIP
        >>> parse_pipeline("bm25%100 >> icr%10", stages)  # doctest: +SKIP
    """
    makers: dict[str, Callable[..., Stage]] = {
        "icr": make_icr, "blockrank": make_blockrank, "ql": make_ql, "listwise": make_listwise}
    if dtype == "auto":  # every reranker's own default
        return {name: partial(make, store) for name, make in makers.items()}
    return {name: partial(_with_dtype, make, store, dtype) for name, make in makers.items()}


def _with_dtype(make: Callable[..., Stage], store: DocStore | None, default: str, /,
                **options: Any) -> Stage:
    return make(store, **{"dtype": default, **options})
