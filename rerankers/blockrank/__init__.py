"""BlockRank: reranking by attention under a block-sparse mask.

- :mod:`~pursuit.rerankers.blockrank.reranker`: :class:`BlockRankReranker`.
- :mod:`~pursuit.rerankers.blockrank.blocks`: the prompt as blocks and the sparse mask.
- :mod:`~pursuit.rerankers.blockrank.forward`: the layer-by-layer forward pass.
- :mod:`~pursuit.rerankers.blockrank.doc_cache`: the per-document key/value cache.
- :mod:`~pursuit.rerankers.blockrank.finetune`: fine-tuning with the BlockRank loss.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "BlockRankReranker": "pursuit.rerankers.blockrank.reranker",
    "DocKVCache": "pursuit.rerankers.blockrank.doc_cache",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
