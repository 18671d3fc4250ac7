"""Asking back: Conformal Information Pursuit over interpretations of a question.

- :mod:`~pursuit.agent.clarify.clarifier`: the clarifier the graph's ``clarify`` node calls.
- :mod:`~pursuit.agent.clarify.interpret`: candidate interpretations and their probabilities.
- :mod:`~pursuit.agent.clarify.cip`: prediction sets, calibrated thresholds, which question to ask.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "CIPClarifier": "pursuit.agent.clarify.clarifier",
    "default_clarifier": "pursuit.agent.clarify.clarifier",
    "Thresholds": "pursuit.agent.clarify.cip",
    "load_thresholds": "pursuit.agent.clarify.cip",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
