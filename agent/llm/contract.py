"""The one contract every chat model of the agent meets, and a scripted model for tests.

The planner, the searchers, the clarifier and the synthesiser talk to a model only through
:class:`LLMClient`: ``complete(messages) -> Completion`` and ``stream(messages)`` yielding
text pieces. Implementations: the in-process model (:mod:`pursuit.agent.llm.local`, the
packaged Qwen2.5-Coder-1.5B by default), any OpenAI-compatible HTTP server
(:mod:`pursuit.agent.llm.http`), and :class:`ScriptedLLM` for tests.

Example:
    >>> llm = ScriptedLLM(["Paris."])
    >>> llm.complete([user("Capital of France?")]).text
    'Paris.'
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pursuit.indexes.errors import PursuitError

__all__ = ["Completion", "LLMClient", "LLMError", "Message", "ScriptedLLM", "TextStream",
           "cancel_scope", "current_cancel", "system", "user"]

#: The stop flag of the run the current code works for (set by :func:`cancel_scope`).
_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "pursuit_run_cancel", default=None)


@contextlib.contextmanager
def cancel_scope(event: threading.Event) -> Iterator[None]:
    """Within this block (and the graph nodes it runs, which inherit context variables),
    a model that generates in-process stops as soon as ``event`` is set, so a stopped or
    abandoned run frees the model at once instead of finishing its answer."""
    token = _CANCEL.set(event)
    try:
        yield
    finally:
        _CANCEL.reset(token)


def current_cancel() -> threading.Event | None:
    """The stop flag of the current run, if a :func:`cancel_scope` set one."""
    return _CANCEL.get()

#: A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``.
Message = dict[str, str]


class LLMError(PursuitError):
    """A model could not answer: a server down or refusing, a timeout, a script run dry."""


@dataclass(frozen=True)
class Completion:
    """One answer of a chat model.

    Attributes:
        text: The generated text (without the prompt).
        prompt_tokens: Tokens the prompt took (0 when the server does not say).
        completion_tokens: Tokens generated (0 when the server does not say).
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class TextStream:
    """A streamed answer: iterate it for the text pieces in order. Once read to the end (or
    closed), ``prompt_tokens`` and ``completion_tokens`` hold the counts the model reported;
    ``None`` where it reported none (an HTTP server that sends no usage with a stream).

    Args:
        produce: Called once with this stream; returns the pieces and may set the counts
            on the stream while it generates.
    """

    def __init__(self, produce: Callable[[TextStream], Iterator[str]]) -> None:
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self._pieces = produce(self)

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop early: a model generating in-process stops at its next token."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()

    @property
    def reported_tokens(self) -> int | None:
        """Prompt plus completion tokens as the model reported them (``None``: not reported)."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class LLMClient(Protocol):
    """A chat model: the only way agent code reaches an LLM.

    Attributes:
        name: What the model is called in results and timings (``"qwen2.5-coder-1.5b"``,
            ``"http://127.0.0.1:8080/v1 llama"``, ``"scripted"``).
    """

    name: str

    def complete(self, messages: Sequence[Message], *, max_tokens: int = 512,
                 temperature: float = 0.0, stop: Sequence[str] | None = None) -> Completion:
        """The model's whole answer to ``messages``; raises :class:`LLMError` on failure."""
        ...

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 512,
               temperature: float = 0.0, stop: Sequence[str] | None = None) -> TextStream:
        """The answer as text pieces in order; their concatenation is ``complete``'s text.
        The stream carries the token counts the model reported, once read to the end."""
        ...


def system(content: str) -> Message:
    """A system message."""
    return {"role": "system", "content": content}


def user(content: str) -> Message:
    """A user message."""
    return {"role": "user", "content": content}


#: A scripted reply: fixed text, or a function of the messages (to answer by content).
Reply = str | Callable[[Sequence[Message]], str]


@dataclass
class ScriptedLLM:
    """A model that answers from a script, for tests: exact, fast, no weights.

    Replies are used in order; a callable reply gets the messages and returns the text, so
    a test can answer by what was asked (parallel searchers call in any order). ``calls``
    records every request. Running out of replies raises :class:`LLMError` naming the
    request, so a test fails loudly instead of hanging. Its token counts are word counts
    (a script has no tokenizer), reported by ``complete`` and by ``stream`` alike.

    Args:
        replies: Replies in order.
        default: Reply used once ``replies`` run out (``None``: raise).
    """

    replies: list[Reply] = field(default_factory=list)
    default: Reply | None = None
    name: str = "scripted"
    calls: list[list[Message]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def complete(self, messages: Sequence[Message], *, max_tokens: int = 512,
                 temperature: float = 0.0, stop: Sequence[str] | None = None) -> Completion:
        """The next scripted reply (cut at the first ``stop`` string, like a server)."""
        with self._lock:
            self.calls.append([dict(m) for m in messages])
            if self.replies:
                reply = self.replies.pop(0)
            elif self.default is not None:
                reply = self.default
            else:
                last = messages[-1]["content"][:120] if messages else ""
                raise LLMError(f"scripted model has no reply left for request "
                               f"{len(self.calls)} ({last!r})")
        text = reply(messages) if callable(reply) else reply
        for s in stop or ():
            if s and s in text:
                text = text[: text.index(s)]
        prompt = sum(len(m["content"].split()) for m in messages)
        return Completion(text, prompt_tokens=prompt, completion_tokens=len(text.split()))

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 512,
               temperature: float = 0.0, stop: Sequence[str] | None = None) -> TextStream:
        """The scripted reply, word by word (with its spacing), with ``complete``'s counts."""
        def pieces(stream: TextStream) -> Iterator[str]:
            got = self.complete(messages, max_tokens=max_tokens, temperature=temperature,
                                stop=stop)
            stream.prompt_tokens, stream.completion_tokens = (got.prompt_tokens,
                                                              got.completion_tokens)
            text, start = got.text, 0
            for i, ch in enumerate(text):
                if ch == " " and i > start:
                    yield text[start:i]
                    start = i
            if start < len(text):
                yield text[start:]
        return TextStream(pieces)
