"""The agent behind the web chat: its models loaded once, in the background, with progress.

:func:`load_chat_agent` loads the embedded models one by one (the planner, the ICR
reranker, the MiniLM encoder, the C-IP scorer), announcing each, and builds two sessions
over one SQLite threads file: one that asks back when a question is ambiguous and one that
never does (requests with ``"clarify": false``). :class:`AgentLoader` runs a loader in a
thread, so the server answers requests (and streams status events) while models load.

Example:
    >>> with SearchIndex.open("demo-index") as index:                  # doctest: +SKIP
    ...     agent = load_chat_agent(index, load_settings())
    ...     agent.for_request(clarify=True).ask("What does functools.cache do?", thread_id="t1")
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

from pursuit.agent.clarify.cip import CIPError
from pursuit.agent.clarify.clarifier import default_clarifier
from pursuit.agent.config import AgentConfig
from pursuit.agent.graph import build_graph, sqlite_checkpointer
from pursuit.agent.searcher import SearchTools
from pursuit.agent.session import AgentSession
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.lm.causal import shared_causal_lm
from pursuit.ui.models import agent_llm
from pursuit.ui.settings import Settings

__all__ = ["AgentLoader", "ChatAgent", "load_chat_agent"]

log = logging.getLogger("pursuit.ui")

#: ``step(label)`` -> a context manager around one loading step (progress display).
Step = Callable[[str], AbstractContextManager[object]]


@dataclass(frozen=True)
class ChatAgent:
    """What the server answers with.

    Attributes:
        session: Asks back when a question is ambiguous; resumes paused turns.
        unattended: Never asks back (``None``: ``session`` answers those requests too).
        model: The chat model's name, as ``/api/health`` reports it.
    """

    session: AgentSession
    unattended: AgentSession | None = None
    model: str = ""

    def for_request(self, *, clarify: bool) -> AgentSession:
        """The session for a chat request with or without clarifying questions."""
        return self.session if clarify or self.unattended is None else self.unattended


@contextlib.contextmanager
def logged_step(label: str) -> Iterator[None]:
    """A loading step reported to the log with its duration."""
    started = time.perf_counter()
    log.info("loading %s ...", label)
    yield
    log.info("loaded %s in %.1f s", label, time.perf_counter() - started)


def load_chat_agent(index: SearchIndex, settings: Settings, *,
                    config: AgentConfig | None = None, step: Step = logged_step,
                    notice: Callable[[str], None] = log.warning) -> ChatAgent:
    """Load the models the agent uses and build its sessions over ``index``.

    Args:
        index: The open index every question is answered from.
        settings: The chat model (``llm`` / ``llm_url``, ``dtype``) and the threads file.
        config: The agent's caps and retrieval (default :class:`AgentConfig` in the
            settings' dtype: hybrid first stage, ICR reranking, clarifying questions with
            C-IP).
        step: Wraps each loading step, e.g. to show a spinner.
        notice: Told what works differently than asked (no C-IP calibration: no
            clarifying questions), so the user sees why.
    """
    config = config or AgentConfig(dtype=settings.dtype)
    what = settings.llm_served + " at " + settings.llm_url if settings.llm_url else settings.llm
    with step(f"the planner ({what})"):
        llm = agent_llm(settings)
    if config.rerank == "icr":
        with step("the ICR reranker (qwen2.5-coder-0.5b)"):
            # The reranker's default model, shared with everything else (same dtype key).
            shared_causal_lm(dtype=config.dtype)
    label = "the encoder (all-MiniLM-L6-v2) and the search stages" if index.vectors is not None \
        else "the search stages"
    with step(label):
        tools = SearchTools.over(index, config)
    clarifier = None
    if config.clarify:
        try:
            with step("the C-IP scorer"):
                clarifier = default_clarifier(index, llm, dtype=config.dtype)
        except CIPError as exc:  # the chat still answers; it just cannot ask back
            notice(f"clarifying questions are off: {exc}")
    saver = sqlite_checkpointer(settings.threads_path)
    asking = build_graph(config, llm=llm, tools=tools, clarifier=clarifier, checkpointer=saver)
    unattended = build_graph(replace(config, clarify=False), llm=llm, tools=tools,
                             clarifier=None, checkpointer=saver)
    return ChatAgent(AgentSession(asking), AgentSession(unattended), model=llm.name)


class AgentLoader:
    """Builds the agent in a background thread; requests wait for it without blocking.

    Args:
        factory: Returns the agent, or a bare :class:`AgentSession` (used for every request).
    """

    def __init__(self, factory: Callable[[], ChatAgent | AgentSession]) -> None:
        self._factory = factory
        self._ready = threading.Event()
        self._agent: ChatAgent | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, name="agent-loader", daemon=True)

    def start(self) -> None:
        """Begin loading."""
        self._thread.start()

    @property
    def ready(self) -> bool:
        """Whether the agent is loaded (or failed to load)."""
        return self._ready.is_set()

    @property
    def agent(self) -> ChatAgent | None:
        """The agent once it is loaded, else ``None``."""
        return self._agent

    def wait(self, cancel: threading.Event | None = None, poll_s: float = 0.2) -> ChatAgent:
        """The agent, once loaded; raises its load error, or :class:`PursuitError` on cancel."""
        while not self._ready.wait(poll_s):
            if cancel is not None and cancel.is_set():
                raise PursuitError("stopped while the models were loading")
        if self._agent is None:
            raise PursuitError(f"the agent could not be loaded: {self._error}; fix that and "
                               "restart the server")
        return self._agent

    def _load(self) -> None:
        try:
            made = self._factory()
            self._agent = made if isinstance(made, ChatAgent) else ChatAgent(made)
        except BaseException as exc:  # reported to every request that needs the agent
            log.exception("loading the agent failed")
            self._error = exc
        finally:
            self._ready.set()
