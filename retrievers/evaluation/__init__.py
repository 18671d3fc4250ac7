"""Evaluation: trec_eval-exact metrics, paired significance tests, batch runs.

- :mod:`~pursuit.retrievers.evaluation.metrics`: :func:`evaluate` rankings against qrels.
- :mod:`~pursuit.retrievers.evaluation.compare`: :func:`compare` systems with a baseline.
- :mod:`~pursuit.retrievers.evaluation.batch`: :func:`run_pipeline` over a dataset's queries.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "EvalResult": "pursuit.retrievers.evaluation.metrics",
    "evaluate": "pursuit.retrievers.evaluation.metrics",
    "Comparison": "pursuit.retrievers.evaluation.compare",
    "RunResult": "pursuit.retrievers.evaluation.batch",
    "run_pipeline": "pursuit.retrievers.evaluation.batch",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
