"""pursuit.rerankers: second stages that rerank a first stage's candidates with an LLM.

The contract (:mod:`~pursuit.rerankers.base`), ICR (attention), QL (query likelihood),
listwise generation (a baseline), the names a pipeline text can use
(:mod:`~pursuit.rerankers.registry`) and pipelines over an index with every name
(:mod:`~pursuit.rerankers.pipelines`). :mod:`pursuit.rerankers.blockrank` holds BlockRank.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "Reranker": "pursuit.rerankers.base",
    "ICRReranker": "pursuit.rerankers.icr",
    "QLReranker": "pursuit.rerankers.ql",
    "ListwiseReranker": "pursuit.rerankers.listwise",
    "BlockRankReranker": "pursuit.rerankers.blockrank.reranker",
    "reranker_stages": "pursuit.rerankers.registry",
    "pipeline": "pursuit.rerankers.pipelines",
    "open_pipeline": "pursuit.rerankers.pipelines",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
