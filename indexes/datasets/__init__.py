"""Evaluation datasets and run files: the formats benchmarks come in.

- :mod:`~pursuit.indexes.datasets.beir`: BEIR folders (corpus, queries, qrels).
- :mod:`~pursuit.indexes.datasets.trec`: TREC run and qrels files.
- :mod:`~pursuit.indexes.datasets.realtimeqa`: RealTime QA's dated news questions.
- :mod:`~pursuit.indexes.datasets.agent_questions`: ClariQ, InteractComp and MultiHop-RAG
  questions for the agent's benchmarks.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "Dataset": "pursuit.indexes.datasets.beir",
    "read_beir": "pursuit.indexes.datasets.beir",
    "write_beir": "pursuit.indexes.datasets.beir",
    "read_run": "pursuit.indexes.datasets.trec",
    "write_run": "pursuit.indexes.datasets.trec",
    "read_qrels": "pursuit.indexes.datasets.trec",
    "write_qrels": "pursuit.indexes.datasets.trec",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
