"""Chat models for the agent: one contract, in-process and HTTP clients, typed answers.

- :mod:`~pursuit.agent.llm.contract`: :class:`LLMClient`, messages, a scripted model for tests.
- :mod:`~pursuit.agent.llm.local`: :func:`load_llm` and the in-process model.
- :mod:`~pursuit.agent.llm.http`: any OpenAI-compatible server.
- :mod:`~pursuit.agent.llm.structured`: JSON answers validated against a schema.
- :mod:`~pursuit.agent.llm.prefix_cache`, :mod:`~.stops`: prompt-prefix reuse, stop strings.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "LLMClient": "pursuit.agent.llm.contract",
    "LLMError": "pursuit.agent.llm.contract",
    "ScriptedLLM": "pursuit.agent.llm.contract",
    "load_llm": "pursuit.agent.llm.local",
    "InProcessLLM": "pursuit.agent.llm.local",
    "OpenAIChatLLM": "pursuit.agent.llm.http",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
