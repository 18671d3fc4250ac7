"""LLM-QL: train a causal LM into a dense retriever, and use it as an encoder.

- :mod:`~pursuit.retrievers.llmql.training`: :class:`LLMQLConfig` and :func:`train_llmql`.
- :mod:`~pursuit.retrievers.llmql.encoder`: :class:`LLMEncoder`, the trained model as a bi-encoder.
- :mod:`~pursuit.retrievers.llmql.data`, :mod:`~.loss`, :mod:`~.lora`, :mod:`~.run`,
  :mod:`~.steps`: training pairs, the two losses, a small LoRA, one run's model and
  batches, and resumable steps.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "LLMQLConfig": "pursuit.retrievers.llmql.training",
    "TrainResult": "pursuit.retrievers.llmql.training",
    "train_llmql": "pursuit.retrievers.llmql.training",
    "LLMEncoder": "pursuit.retrievers.llmql.encoder",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
