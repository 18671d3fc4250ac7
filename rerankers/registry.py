"""The rerankers a pipeline's textual form can name (``bm25%100 >> icr%10``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from pursuit.indexes.docstore import DocStore
from pursuit.rerankers.blockrank.reranker import make_blockrank
from pursuit.rerankers.icr import make_icr
from pursuit.rerankers.listwise import make_listwise
from pursuit.rerankers.ql import make_ql
from pursuit.retrievers.stage import Stage


def reranker_stages(store: DocStore | None) -> dict[str, Callable[..., Stage]]:
    """Constructors of every reranker, fetching document texts from ``store`` when needed.

    Each takes constant keyword options, e.g. ``icr(model='qwen2.5-coder-1.5b')``.

    Example:
        >>> stages = index_stages(index) | reranker_stages(index.store)  # doctest: +SKIP
        >>> parse_pipeline("bm25%100 >> icr%10", stages)  # doctest: +SKIP
    """
    return {
        "icr": partial(make_icr, store),
        "blockrank": partial(make_blockrank, store),
        "ql": partial(make_ql, store),
        "listwise": partial(make_listwise, store),
    }
