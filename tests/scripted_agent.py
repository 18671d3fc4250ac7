"""A scripted chat model that plays every role of the agent, chosen by the system prompt.

The agent sends each kind of request with its own system prompt (planner, query rewriter,
reviewer, searcher's answerer, synthesiser; see :mod:`pursuit.agent.prompts`), and every
prompt names its question inside ``<question>`` tags. :class:`ScriptedAgent` answers each
kind from fixed texts, so the graph, the CLI, the web server and the load benchmark run a
whole turn exactly and fast. :class:`AskOnce` is the matching scripted clarifier, and
:data:`CORPUS` the documents those scripts are written about (a file that needs more adds
its own, e.g. ``[*CORPUS, SEQUEL]``).

Imported as a plain module, like ``chat_server`` and ``tiny_lm``: pytest puts ``tests/`` on
``sys.path``; ``bench/load_chat.py`` adds it itself.

Example:
    >>> from pursuit.agent.llm.contract import ScriptedLLM
    >>> plan = {"nodes": [{"id": "n1", "question": "Who wrote Dune?", "depends_on": []}]}
    >>> llm = ScriptedLLM(default=ScriptedAgent(plan=plan, answers="Herbert {Dune}.",
    ...                                         final="Frank Herbert [1]."))
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pursuit.agent.llm.contract import Message
from pursuit.agent.prompts import ANSWERER, PLANNER, REVIEWER, REWRITER, SYNTHESISER
from pursuit.indexes.records import Doc

__all__ = ["CORPUS", "SEQUEL", "AskOnce", "ScriptedAgent", "cite_titles", "question_of", "role"]

Plan = Mapping[str, Any]
#: Called before each reply with ``(system prompt, question)``: may block, sleep or raise.
Hook = Callable[[str, str], object]

#: Who wrote Dune, where he was born, and an unrelated passage on tides (2020-01-01 to 03).
CORPUS = (
    Doc("dune", "Dune is a 1965 science fiction novel written by Frank Herbert.", title="Dune",
        published_at=datetime(2020, 1, 1, tzinfo=UTC)),
    Doc("herbert", "Frank Herbert was born in Tacoma, Washington, in 1920.",
        title="Frank Herbert", published_at=datetime(2020, 1, 2, tzinfo=UTC)),
    Doc("tides", "The moon's gravity raises the ocean tides twice a day.", title="Tides",
        published_at=datetime(2020, 1, 3, tzinfo=UTC)),
)
#: A document published long after :data:`CORPUS`, for checks of ``as_of`` / date filters.
SEQUEL = Doc("sequel", "Dune Messiah, the sequel, was published in 1969 by Frank Herbert.",
             title="Dune Messiah", published_at=datetime(2024, 6, 1, tzinfo=UTC))

_PASSAGE = re.compile(r'<passage n="(\d+)" title="([^"]*)"')


def role(messages: Sequence[Message]) -> str:
    """The system prompt of a request (``""`` when it has none): which role is asked."""
    return messages[0]["content"] if messages and messages[0]["role"] == "system" else ""


def question_of(messages: Sequence[Message]) -> str:
    """The question inside the last message's ``<question>`` tags (``""`` if none)."""
    body = messages[-1]["content"] if messages else ""
    if "<question>" not in body:
        return ""
    return body.split("<question>", 1)[1].split("</question>", 1)[0]


def cite_titles(answer: str, prompt: str) -> str:
    """``answer`` with each ``{Title}`` replaced by ``[n]``, the number ``prompt`` gave the
    passage of that title, so a script can cite passages without knowing the ranking."""
    by_title = {title: n for n, title in _PASSAGE.findall(prompt)}
    return re.sub(r"\{([^}]+)\}", lambda m: f"[{by_title[m.group(1)]}]", answer)


def _pick(choice: str | Mapping[str, str], question: str) -> str:
    return choice if isinstance(choice, str) else choice[question]


class ScriptedAgent:
    """A reply function for :class:`~pursuit.agent.llm.contract.ScriptedLLM` (or ``chat_server``)
    that answers each request by its system prompt, like a model that follows them.

    Args:
        plan: The planner's plan (``{"nodes": [...]}``), or a function of the user's
            question that returns it.
        answers: The searchers' answer: one text for every sub-question, or texts keyed
            by sub-question. ``{Title}`` in a text becomes ``[n]`` for that passage.
        final: The synthesiser's answer: one text, or texts keyed by the user's question.
        review: The reviewer's reply (default: finish).
        queries: The query rewriter's queries (default: none, so the sub-question is used).
        hook: Called with ``(system prompt, question)`` before each reply; it may block
            (a gate), sleep (model time) or raise (a failing model).
        delay_s: Seconds every call takes, before ``hook``.

    Raises:
        AssertionError: On a request no role of the agent sends.
    """

    def __init__(self, *, plan: Plan | Callable[[str], Plan],
                 answers: str | Mapping[str, str], final: str | Mapping[str, str],
                 review: str = '{"finish": true}', queries: Sequence[str] = (),
                 hook: Hook | None = None, delay_s: float = 0.0) -> None:
        self.plan, self.answers, self.final = plan, answers, final
        self.review, self.queries = review, list(queries)
        self.hook, self.delay_s = hook, delay_s

    def __call__(self, messages: Sequence[Message]) -> str:
        """The reply to one request."""
        kind, question = role(messages), question_of(messages)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.hook:
            self.hook(kind, question)
        if kind == PLANNER:
            return json.dumps(self.plan(question) if callable(self.plan) else self.plan)
        if kind == REWRITER:
            return json.dumps({"queries": self.queries})
        if kind == REVIEWER:
            return self.review
        if kind == ANSWERER:
            return cite_titles(_pick(self.answers, question), messages[-1]["content"])
        if kind == SYNTHESISER:
            return _pick(self.final, question)
        raise AssertionError(f"unexpected request {messages!r}")


class AskOnce:
    """A clarifier that asks "novel or film?" once per turn, then is satisfied.

    Args:
        about: Ask only about this exact question (``None``: about every question).
    """

    def __init__(self, about: str | None = None) -> None:
        self.about = about

    def decide(self, question: str, clarifications: list[dict[str, Any]],
               as_of: str | None) -> dict[str, Any] | None:
        """The clarifying question to ask, or ``None`` once answered or when not asked."""
        if clarifications or (self.about is not None and question != self.about):
            return None
        return {"question": "Do you mean the novel or the film?", "options": ["novel", "film"]}
