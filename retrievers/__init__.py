"""pursuit.retrievers: first-stage retrieval, the pipeline algebra, LMs and evaluation.

The :class:`Stage` contract and its operators (:mod:`~pursuit.retrievers.stage`), the
pipeline-text parser (:mod:`~pursuit.retrievers.pipeline_parser`), the stages an index can
name (:mod:`~pursuit.retrievers.registry`), BM25 and dense retrieval, and text encoders.
Subpackages:

- :mod:`pursuit.retrievers.lm`: loading and running causal LMs (used by every layer above).
- :mod:`pursuit.retrievers.llmql`: LLM-QL, a causal LM trained into a dense retriever.
- :mod:`pursuit.retrievers.events`: event-aware retrieval for time-sensitive queries.
- :mod:`pursuit.retrievers.evaluation`: metrics, significance tests and batch runs.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "Stage": "pursuit.retrievers.stage",
    "Retriever": "pursuit.retrievers.stage",
    "RRF": "pursuit.retrievers.stage",
    "ScoreFusion": "pursuit.retrievers.stage",
    "parse_pipeline": "pursuit.retrievers.pipeline_parser",
    "PipelineError": "pursuit.retrievers.pipeline_parser",
    "index_stages": "pursuit.retrievers.registry",
    "BM25Retriever": "pursuit.retrievers.bm25",
    "DenseRetriever": "pursuit.retrievers.dense",
    "SentenceTransformerEncoder": "pursuit.retrievers.encoders",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
