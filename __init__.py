"""pursuit: a search agent and retrieval toolkit.

``import pursuit`` is the front door: every name below is importable from the top, and each
is loaded on first use, so ``import pursuit`` itself stays fast (no torch until a model is
needed)::

    import pursuit

    index = pursuit.SearchIndex.open("demo-index")
    for hit in pursuit.pipeline(index, "bm25%100 >> icr%10").search("read a file").top(5):
        print(hit.doc_id, hit.score)

Layers, with dependencies pointing one way only::

    indexes  <-  retrievers  <-  rerankers  <-  agent  <-  ui
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"


def lazy_exports(package: str, exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package that re-exports names from its modules.

    Args:
        package: The package's ``__name__`` (for the error message).
        exports: Public name -> the module that defines it.

    Returns:
        The two module-level functions; a name is imported from its module on first access.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__


_EXPORTS = {
    # records and errors
    **dict.fromkeys(["Doc", "Query", "Hit", "Ranking", "Provenance"], "pursuit.indexes.records"),
    "PursuitError": "pursuit.indexes.errors",
    "DocFilter": "pursuit.indexes.filters",
    # building and opening an index
    "SearchIndex": "pursuit.indexes.collection",
    "load_corpus": "pursuit.indexes.sources.corpus",
    "read_beir": "pursuit.indexes.datasets.beir",
    "SentenceTransformerEncoder": "pursuit.retrievers.encoders",
    # stages and pipelines
    "Stage": "pursuit.retrievers.stage",
    "BM25Retriever": "pursuit.retrievers.bm25",
    "DenseRetriever": "pursuit.retrievers.dense",
    "EventAwareRetriever": "pursuit.retrievers.events.retriever",
    "parse_pipeline": "pursuit.retrievers.pipeline_parser",
    "index_stages": "pursuit.retrievers.registry",
    "reranker_stages": "pursuit.rerankers.registry",
    **dict.fromkeys(["pipeline", "pipelines", "open_pipeline"], "pursuit.rerankers.pipelines"),
    # evaluation
    "evaluate": "pursuit.retrievers.evaluation.metrics",
    "compare": "pursuit.retrievers.evaluation.compare",
    "run_pipeline": "pursuit.retrievers.evaluation.batch",
    # models and rerankers
    "load_causal_lm": "pursuit.retrievers.lm.causal",
    "ICRReranker": "pursuit.rerankers.icr",
    "QLReranker": "pursuit.rerankers.ql",
    "ListwiseReranker": "pursuit.rerankers.listwise",
    "BlockRankReranker": "pursuit.rerankers.blockrank.reranker",
    # the agent
    "AgentConfig": "pursuit.agent.config",
    "build_agent": "pursuit.agent.factory",
    "load_llm": "pursuit.agent.llm.local",
}

__all__ = ["__version__", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
