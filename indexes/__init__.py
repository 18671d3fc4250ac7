"""pursuit.indexes: what an index is made of, on disk and in memory.

The bottom layer: records passed between every stage (:mod:`~pursuit.indexes.records`),
errors that say what to do (:mod:`~pursuit.indexes.errors`), the SQLite document store, the
BM25 index, the versioned manifest, and :class:`SearchIndex`, the index directory that
holds them (:mod:`~pursuit.indexes.collection`). Subpackages:

- :mod:`pursuit.indexes.vectors`: the FAISS vector store and its files.
- :mod:`pursuit.indexes.events`: timestamped events clustered from document vectors.
- :mod:`pursuit.indexes.sources`: documents from JSON/JSONL, folders of files, the demo corpus.
- :mod:`pursuit.indexes.datasets`: BEIR folders, TREC runs and qrels, RealTime QA and the
  agent benchmarks' question sets.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "Doc": "pursuit.indexes.records",
    "Query": "pursuit.indexes.records",
    "Hit": "pursuit.indexes.records",
    "Ranking": "pursuit.indexes.records",
    "Provenance": "pursuit.indexes.records",
    "PursuitError": "pursuit.indexes.errors",
    "FormatError": "pursuit.indexes.errors",
    "MissingDependencyError": "pursuit.indexes.errors",
    "DocFilter": "pursuit.indexes.filters",
    "DocStore": "pursuit.indexes.docstore",
    "BM25Index": "pursuit.indexes.bm25",
    "Manifest": "pursuit.indexes.manifest",
    "SearchIndex": "pursuit.indexes.collection",
    "Encoder": "pursuit.indexes.protocols",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
