"""The models the command line and the web chat load, chosen by :class:`Settings`."""

from __future__ import annotations

from pursuit.agent.llm.contract import LLMClient
from pursuit.agent.llm.local import load_llm
from pursuit.ui.settings import Settings

__all__ = ["agent_llm"]


def agent_llm(settings: Settings) -> LLMClient:
    """The agent's model from settings: the HTTP server when ``llm_url`` is set, else
    ``settings.llm`` in this process, in ``settings.dtype``."""
    if settings.llm_url:
        return load_llm(settings.llm_served, base_url=settings.llm_url,
                        api_key=settings.llm_api_key or None)
    return load_llm(settings.llm, dtype=settings.dtype)
