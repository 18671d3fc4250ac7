"""The agent's chat model in this process, and :func:`load_llm`, which picks a model.

:class:`InProcessLLM` generates with a loaded :class:`~pursuit.retrievers.lm.causal.CausalLM`
(the packaged Qwen2.5-Coder by default) on a worker thread, streaming tokens back;
:func:`load_llm` returns it, or :class:`~pursuit.agent.llm.http.OpenAIChatLLM` for an
OpenAI-compatible server (vLLM, llama.cpp, Ollama, hosted) when given its URL.

Example:
    >>> llm = load_llm("qwen2.5-coder-0.5b")  # doctest: +SKIP
    >>> llm.complete([user("What is 2+3? Answer with the number only.")]).text  # doctest: +SKIP
    '5'
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from pursuit.agent.llm.contract import (
    Completion,
    LLMClient,
    LLMError,
    Message,
    TextStream,
    current_cancel,
)
from pursuit.agent.llm.http import OpenAIChatLLM
from pursuit.agent.llm.prefix_cache import PrefixKVCache
from pursuit.agent.llm.stops import StopCut
from pursuit.retrievers.lm.causal import CausalLM, shared_causal_lm

# OpenAIChatLLM lives in pursuit.agent.llm.http; it is listed here because load_llm returns it.
__all__ = ["DEFAULT_PLANNER", "InProcessLLM", "OpenAIChatLLM", "load_llm", "shared_prefix_cache"]

#: The in-process model that plans and answers when nothing else is configured.
DEFAULT_PLANNER = "qwen2.5-coder-1.5b"
#: One generation lock per model object, so searcher threads sharing a model take turns.
_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_DONE = object()


_PREFIXES: weakref.WeakKeyDictionary[Any, PrefixKVCache] = weakref.WeakKeyDictionary()


def _model_lock(model: Any) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


def shared_prefix_cache(model: Any) -> PrefixKVCache:
    """The prefix key/value cache every :class:`InProcessLLM` on ``model`` shares."""
    with _LOCKS_GUARD:
        cache = _PREFIXES.get(model)
        if cache is None:
            cache = _PREFIXES[model] = PrefixKVCache()
        return cache


class _TokenQueue(BaseStreamer):
    """Hands each generated token list to the consuming thread (the prompt is skipped)."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        pass  # the worker posts _DONE itself, also when generate raises


class _Cancelled(StoppingCriteria):
    """Stops generation once the consumer is gone or saw a stop string, or the run it
    serves was stopped (:func:`pursuit.agent.llm.contract.cancel_scope`)."""

    def __init__(self, event: threading.Event, run: threading.Event | None = None) -> None:
        self.event, self.run = event, run

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        stop = self.event.is_set() or (self.run is not None and self.run.is_set())
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool,
                          device=input_ids.device)


class InProcessLLM:
    """A chat model generating in this process with a loaded causal LM.

    Greedy decoding at ``temperature == 0``, sampling otherwise. Calls on the same model
    object take turns (one lock per model), so parallel searcher nodes may share it. A
    prompt that begins like a recent one (a conversation's next turn, a retried structured
    request) prefills only what is new (:mod:`pursuit.agent.llm.prefix_cache`).

    Args:
        lm: The loaded model (see :func:`pursuit.retrievers.lm.causal.shared_causal_lm`); its
            tokenizer must have a chat template.
        name: What results call it; default the model's canonical id.
        prefix_cache: Reuse of recent prompts' keys and values: ``True`` shares one cache
            per model object (:func:`shared_prefix_cache`), ``False`` prefills every
            prompt whole, or a cache of its own.

    Example:
        >>> llm = InProcessLLM(shared_causal_lm("qwen2.5-coder-0.5b"))  # doctest: +SKIP
        >>> "".join(llm.stream([user("Say hi.")], max_tokens=8))  # doctest: +SKIP
        'Hi!'
    """

    def __init__(self, lm: CausalLM, *, name: str | None = None,
                 prefix_cache: bool | PrefixKVCache = True) -> None:
        self.lm = lm
        self.name = name or lm.model_id
        self.prefix: PrefixKVCache | None = (
            shared_prefix_cache(lm.model) if prefix_cache is True
            else prefix_cache if isinstance(prefix_cache, PrefixKVCache) else None)

    def complete(self, messages: Sequence[Message], *, max_tokens: int = 512,
                 temperature: float = 0.0, stop: Sequence[str] | None = None) -> Completion:
        """The whole answer, cut at the first ``stop`` string, with token counts."""
        stream = self.stream(messages, max_tokens=max_tokens, temperature=temperature,
                             stop=stop)
        text = "".join(stream)
        return Completion(text, prompt_tokens=stream.prompt_tokens or 0,
                          completion_tokens=stream.completion_tokens or 0)

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 512,
               temperature: float = 0.0, stop: Sequence[str] | None = None) -> TextStream:
        """The answer as it is generated, with its exact token counts; closing the stream
        early stops generation."""
        return TextStream(lambda counts: self._pieces(messages, max_tokens, temperature, stop,
                                                      counts))

    def _pieces(self, messages: Sequence[Message], max_tokens: int, temperature: float,
                stop: Sequence[str] | None, counts: TextStream) -> Iterator[str]:
        tokenizer, model = self.lm.tokenizer, self.lm.model
        if not getattr(tokenizer, "chat_template", None):
            raise LLMError(f"the tokenizer of {self.name} has no chat template; use an "
                           "instruct model (e.g. qwen2.5-coder-1.5b)")
        prompt = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False,
                                               add_generation_prompt=True)
        ids = tokenizer(str(prompt), return_tensors="pt", add_special_tokens=False).input_ids
        ids = ids.to(self.lm.device)
        counts.prompt_tokens, counts.completion_tokens = int(ids.shape[1]), 0
        tokens, cancel, errors = _TokenQueue(), threading.Event(), []
        run_cancel = current_cancel()  # read here: the generate thread has its own context
        sampling = temperature > 0
        # Sampling keeps the model's own top-p / top-k; greedy clears them (no warnings).
        options: dict[str, Any] = {"do_sample": True, "temperature": temperature} if sampling \
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        options["max_new_tokens"] = max_tokens
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else tokenizer.eos_token_id

        prefix = self.prefix

        def work() -> None:
            try:
                with _model_lock(model), torch.inference_mode():
                    if prefix is not None:
                        options["cache"] = prefix.take(ids[0])
                    out = model.generate(ids, attention_mask=torch.ones_like(ids),
                                         streamer=tokens, pad_token_id=pad,
                                         stopping_criteria=StoppingCriteriaList(
                                             [_Cancelled(cancel, run_cancel)]), **options)
                    if prefix is not None:
                        prefix.put(out[0], options["cache"])
            except Exception as exc:  # handed to the consumer, which raises it
                errors.append(exc)
            finally:
                tokens.queue.put(_DONE)

        return self._consume(work, tokens, cancel, errors, stop, counts)

    def _consume(self, work: Any, tokens: _TokenQueue, cancel: threading.Event,
                 errors: list[Exception], stop: Sequence[str] | None,
                 counts: TextStream) -> Iterator[str]:
        thread = threading.Thread(target=work, name=f"generate {self.name}", daemon=True)
        thread.start()
        generated: list[int] = []
        cut, seen = StopCut(stop), 0
        try:
            while not cut.done:
                item = tokens.queue.get()
                if item is _DONE:
                    break
                generated.extend(item)
                counts.completion_tokens = len(generated)
                text = self._decode(generated)
                if text.endswith("\ufffd"):  # half a UTF-8 character: wait for the rest
                    continue
                piece, seen = cut.feed(text[seen:]), len(text)
                if piece:
                    yield piece
            if errors:
                raise LLMError(f"{self.name} failed while generating: {errors[0]}") from errors[0]
            rest = cut.feed(self._decode(generated)[seen:]) + cut.flush()
            if rest:
                yield rest
        finally:
            cancel.set()
            thread.join()

    def _decode(self, ids: list[int]) -> str:
        return str(self.lm.tokenizer.decode(ids, skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False))


def load_llm(model: str | None = None, *, base_url: str | None = None,
             api_key: str | None = None, timeout_s: float = 120, retries: int = 3,
             dtype: str = "auto", device: str = "auto") -> LLMClient:
    """The agent's chat model: an HTTP server when ``base_url`` is given, else in-process.

    Args:
        model: With ``base_url``, the name the server serves (``None``: ``"default"``,
            which llama.cpp's server accepts); otherwise a packaged name, hub id or local
            path for :func:`~pursuit.retrievers.lm.causal.shared_causal_lm`
            (``None``: :data:`DEFAULT_PLANNER`).
        base_url: An OpenAI-compatible API root such as ``"http://127.0.0.1:8080/v1"``.
        api_key: The server's key, if it wants one.
        timeout_s: HTTP connect/read timeout.
        retries: HTTP retries after the first attempt.
        dtype: In-process weights dtype: ``"auto"`` (bfloat16 where the hardware computes
            it natively, else float32), ``"bfloat16"``, ``"float32"`` or ``"float16"``.
        device: In-process device (``"auto"``, ``"cpu"``, ``"cuda"``).

    Example:
        >>> load_llm(base_url="http://127.0.0.1:8080/v1").name  # doctest: +SKIP
        'default @ http://127.0.0.1:8080/v1'
    """
    if base_url:
        return OpenAIChatLLM(base_url, model or "default", api_key=api_key,
                             timeout_s=timeout_s, retries=retries)
    return InProcessLLM(shared_causal_lm(model or DEFAULT_PLANNER, dtype=dtype, device=device))
