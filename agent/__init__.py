"""pursuit.agent: questions answered with citations, asking back when ambiguous.

A LangGraph graph (:mod:`~pursuit.agent.graph`, :mod:`~pursuit.agent.nodes`) plans
sub-questions, searches them (:mod:`~pursuit.agent.searcher`), checks citations and writes
the answer. :func:`build_agent` (:mod:`~pursuit.agent.factory`) makes one from an open index.
Subpackages:

- :mod:`pursuit.agent.llm`: chat models in-process and over HTTP, structured output.
- :mod:`pursuit.agent.clarify`: C-IP clarifying questions over interpretations.
- :mod:`pursuit.agent.evaluation`: the harness the agent benchmarks in ``bench/`` use; not
  part of the agent at run time.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "AgentConfig": "pursuit.agent.config",
    "build_agent": "pursuit.agent.factory",
    "AgentSession": "pursuit.agent.session",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
