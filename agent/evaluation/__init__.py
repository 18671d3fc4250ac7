"""The agent benchmarks' harness: runs, a simulated user, information-seeking metrics.

Used by ``bench/`` scripts and tests, not by the agent at run time.

- :mod:`~pursuit.agent.evaluation.runs`: one question through the agent, graded.
- :mod:`~pursuit.agent.evaluation.simulator`: a simulated user that answers yes/no.
- :mod:`~pursuit.agent.evaluation.seeking`: ISR, ISE and evidence recall at k.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "run_question": "pursuit.agent.evaluation.runs",
    "interact": "pursuit.agent.evaluation.runs",
    "SimulatedUser": "pursuit.agent.evaluation.simulator",
    "isr": "pursuit.agent.evaluation.seeking",
    "ise": "pursuit.agent.evaluation.seeking",
    "evidence_recall_at_k": "pursuit.agent.evaluation.seeking",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
