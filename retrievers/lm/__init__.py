"""Causal language models: one loader for rerankers, query likelihood and the agent.

- :mod:`~pursuit.retrievers.lm.causal`: :func:`load_causal_lm`, the shared model cache,
  device and dtype choice.
- :mod:`~pursuit.retrievers.lm.gguf`: packaged GGUF weights: assemble, verify, convert once.
- :mod:`~pursuit.retrievers.lm.weights`: where weights come from (packages, folders, hub ids).
"""

from pursuit import lazy_exports

_EXPORTS = {
    "CausalLM": "pursuit.retrievers.lm.causal",
    "load_causal_lm": "pursuit.retrievers.lm.causal",
    "shared_causal_lm": "pursuit.retrievers.lm.causal",
    "resolve_dtype": "pursuit.retrievers.lm.causal",
    "resolve_device": "pursuit.retrievers.lm.causal",
    "PACKAGED_LLMS": "pursuit.retrievers.lm.causal",
    "DEFAULT_LLM": "pursuit.retrievers.lm.causal",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
