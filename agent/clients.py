"""The chat models behind :class:`~pursuit.agent.llm.LLMClient`: in-process and over HTTP.

:class:`InProcessLLM` generates with a loaded :class:`~pursuit.retrievers.llm.CausalLM`
(the packaged Qwen2.5-Coder by default); :class:`OpenAIChatLLM` talks to any
OpenAI-compatible server (vLLM, llama.cpp, Ollama, hosted). :func:`load_llm` picks one.

Example:
    >>> llm = load_llm("qwen2.5-coder-0.5b")  # doctest: +SKIP
    >>> llm.complete([user("What is 2+3? Answer with the number only.")]).text  # doctest: +SKIP
    '5'
"""

from __future__ import annotations

import json
import queue
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from pursuit.agent.llm import Completion, LLMClient, LLMError, Message, TextStream, current_cancel
from pursuit.retrievers.llm import CausalLM, shared_causal_lm

__all__ = ["DEFAULT_PLANNER", "InProcessLLM", "OpenAIChatLLM", "load_llm"]

#: The in-process model that plans and answers when nothing else is configured.
DEFAULT_PLANNER = "qwen2.5-coder-1.5b"
#: One generation lock per model object, so searcher threads sharing a model take turns.
_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_DONE = object()


def _model_lock(model: Any) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


class _StopCut:
    """Cuts streamed text at the first stop string, holding back a possible partial match."""

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stops = [s for s in stop or () if s]
        self.text, self.sent, self.done = "", 0, False

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the text now safe to emit ("" once a stop string was seen)."""
        if self.done:
            return ""
        self.text += piece
        hits = [i for i in (self.text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.done = True
            out, self.sent = self.text[self.sent:min(hits)], min(hits)
            return out
        # A tail that could still grow into a stop string waits for the next piece.
        hold = max((k for s in self.stops for k in range(1, len(s))
                    if self.text.endswith(s[:k])), default=0)
        safe = max(self.sent, len(self.text) - hold)
        out, self.sent = self.text[self.sent:safe], safe
        return out

    def flush(self) -> str:
        """The held-back tail once the text is complete."""
        out = "" if self.done else self.text[self.sent:]
        self.sent = len(self.text)
        return out


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
    serves was stopped (:func:`pursuit.agent.llm.cancel_scope`)."""

    def __init__(self, event: threading.Event, run: threading.Event | None = None) -> None:
        self.event, self.run = event, run

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        stop = self.event.is_set() or (self.run is not None and self.run.is_set())
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool,
                          device=input_ids.device)


class InProcessLLM:
    """A chat model generating in this process with a loaded causal LM.

    Greedy decoding at ``temperature == 0``, sampling otherwise. Calls on the same model
    object take turns (one lock per model), so parallel searcher nodes may share it.

    Args:
        lm: The loaded model (see :func:`pursuit.retrievers.llm.shared_causal_lm`); its
            tokenizer must have a chat template.
        name: What results call it; default the model's canonical id.

    Example:
        >>> llm = InProcessLLM(shared_causal_lm("qwen2.5-coder-0.5b"))  # doctest: +SKIP
        >>> "".join(llm.stream([user("Say hi.")], max_tokens=8))  # doctest: +SKIP
        'Hi!'
    """

    def __init__(self, lm: CausalLM, *, name: str | None = None) -> None:
        self.lm = lm
        self.name = name or lm.model_id

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

        def work() -> None:
            try:
                with _model_lock(model), torch.inference_mode():
                    model.generate(ids, attention_mask=torch.ones_like(ids), streamer=tokens,
                                   stopping_criteria=StoppingCriteriaList([_Cancelled(cancel, run_cancel)]),
                                   pad_token_id=pad, **options)
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
        cut, seen = _StopCut(stop), 0
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


class OpenAIChatLLM:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Connection errors, timeouts, HTTP 429 and 5xx are retried with exponential back-off
    (``Retry-After`` is honoured, capped at 30 s); other 4xx answers fail at once.

    Args:
        base_url: The API root, e.g. ``"http://127.0.0.1:8080/v1"``.
        model: The model name the server serves.
        api_key: Sent as a bearer token when given.
        timeout_s: Seconds to wait for a connection or for each read.
        retries: Extra attempts after the first.
        backoff_s: The first back-off; it doubles with each retry.
        client: An ``httpx.Client`` to use (default: one of its own).

    Example:
        >>> llm = OpenAIChatLLM("http://127.0.0.1:8080/v1", "qwen")  # doctest: +SKIP
        >>> llm.complete([user("Say hi.")], max_tokens=8).text  # doctest: +SKIP
        'Hi!'
    """

    max_retry_after_s = 30.0

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 120.0, retries: int = 3, backoff_s: float = 0.5,
                 client: httpx.Client | None = None) -> None:
        self.base_url, self.model = base_url.rstrip("/"), model
        self.url = f"{self.base_url}/chat/completions"
        self.name = f"{model} @ {self.base_url}"
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client or httpx.Client(timeout=httpx.Timeout(timeout_s))

    def complete(self, messages: Sequence[Message], *, max_tokens: int = 512,
                 temperature: float = 0.0, stop: Sequence[str] | None = None) -> Completion:
        """The server's whole answer (also cut at ``stop`` here, in case it ignores it)."""
        response = self._send(self._body(messages, max_tokens, temperature, stop, False))
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise LLMError(f"the model server at {self.url} sent a reply that is not an OpenAI "
                           f"chat completion: {response.text[:300]!r}") from None
        cut = _StopCut(stop)
        text = cut.feed(text) + cut.flush()
        return Completion(text, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 512,
               temperature: float = 0.0, stop: Sequence[str] | None = None) -> TextStream:
        """The answer piece by piece from the server's event stream. The request asks for
        usage (``stream_options.include_usage``); a server that sends it fills the
        stream's token counts, one that does not leaves them ``None``."""
        body = self._body(messages, max_tokens, temperature, stop, True)
        return TextStream(lambda counts: self._events(body, stop, counts))

    def _events(self, body: dict[str, Any], stop: Sequence[str] | None,
                counts: TextStream) -> Iterator[str]:
        response = self._send(body, stream=True)
        cut = _StopCut(stop)
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                event = self._event(payload)
                usage = event.get("usage")
                if isinstance(usage, dict):  # the last chunk; others send null or nothing
                    counts.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                    counts.completion_tokens = int(usage.get("completion_tokens") or 0)
                piece = cut.feed(self._delta(event, payload))
                if piece:
                    yield piece
                if cut.done:
                    break
            rest = cut.flush()
            if rest:
                yield rest
        except httpx.TimeoutException:
            raise LLMError(f"the model server at {self.url} stopped sending within "
                           f"{self.timeout_s:g} s; raise the timeout or check the server") from None
        except httpx.HTTPError as exc:
            raise LLMError(f"the stream from the model server at {self.url} broke: {exc}; "
                           "check the server's log") from exc
        finally:
            response.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def _body(self, messages: Sequence[Message], max_tokens: int, temperature: float,
              stop: Sequence[str] | None, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages],
                                "max_tokens": max_tokens, "temperature": temperature,
                                "stream": stream}
        if stop:
            body["stop"] = list(stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _event(self, payload: str) -> dict[str, Any]:
        """One server-sent chunk as a dict; an error event or non-JSON raises."""
        try:
            event = json.loads(payload)
        except ValueError:
            raise LLMError(f"the model server at {self.url} sent an event that is not JSON: "
                           f"{payload[:300]!r}") from None
        if not isinstance(event, dict):
            raise LLMError(f"the model server at {self.url} sent an event that is not an "
                           f"OpenAI chat chunk: {payload[:300]!r}")
        if event.get("error"):
            raise LLMError(f"the model server at {self.url} reported an error while streaming: "
                           f"{str(event['error'])[:500]}")
        return event

    def _delta(self, event: dict[str, Any], payload: str) -> str:
        if "choices" not in event and "usage" in event:
            return ""  # a chunk with the usage only
        try:
            choices = event["choices"]
            return str((choices[0].get("delta") or {}).get("content") or "") if choices else ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LLMError(f"the model server at {self.url} sent an event that is not an OpenAI "
                           f"chat chunk: {payload[:300]!r}") from None

    def _send(self, body: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        """POST ``body``, retrying what may pass; a 200 response (left open when streaming)."""
        attempts, problem = self.retries + 1, ""
        for attempt in range(attempts):
            wait = self.backoff_s * 2 ** attempt
            try:
                request = self.client.build_request("POST", self.url, json=body,
                                                    headers=self.headers)
                response = self.client.send(request, stream=True)
                if response.status_code == 200 and stream:
                    return response
                response.read()
            except httpx.ConnectError as exc:
                problem = (f"cannot reach the model server at {self.url}: {exc}; "
                           "start it or set --llm-url")
            except httpx.TimeoutException:
                problem = (f"the model server at {self.url} did not answer within "
                           f"{self.timeout_s:g} s; raise the timeout or ask for fewer tokens")
            except httpx.HTTPError as exc:
                problem = f"the request to the model server at {self.url} failed: {exc}"
            else:
                if response.status_code == 200:
                    return response
                detail = response.text[:500]
                if response.status_code != 429 and response.status_code < 500:
                    raise LLMError(f"the model server at {self.url} refused the request with "
                                   f"HTTP {response.status_code}: {detail}; check the model "
                                   "name and the request")
                problem = (f"the model server at {self.url} answered HTTP "
                           f"{response.status_code}: {detail}; check the server's log")
                wait = self._retry_after(response, wait)
            if attempt + 1 < attempts:
                time.sleep(wait)
        raise LLMError(f"{problem} (gave up after {attempts} attempt"
                       f"{'s' if attempts != 1 else ''})")

    def _retry_after(self, response: httpx.Response, default: float) -> float:
        try:
            seconds = float(response.headers.get("Retry-After", ""))
        except ValueError:
            return default
        return min(max(seconds, 0.0), self.max_retry_after_s)


def load_llm(model: str | None = None, *, base_url: str | None = None,
             api_key: str | None = None, timeout_s: float = 120, retries: int = 3,
             dtype: str = "bfloat16", device: str = "auto") -> LLMClient:
    """The agent's chat model: an HTTP server when ``base_url`` is given, else in-process.

    Args:
        model: With ``base_url``, the name the server serves (``None``: ``"default"``,
            which llama.cpp's server accepts); otherwise a packaged name, hub id or local
            path for :func:`~pursuit.retrievers.llm.shared_causal_lm`
            (``None``: :data:`DEFAULT_PLANNER`).
        base_url: An OpenAI-compatible API root such as ``"http://127.0.0.1:8080/v1"``.
        api_key: The server's key, if it wants one.
        timeout_s: HTTP connect/read timeout.
        retries: HTTP retries after the first attempt.
        dtype: In-process weights dtype.
        device: In-process device (``"auto"``, ``"cpu"``, ``"cuda"``).

    Example:
        >>> load_llm(base_url="http://127.0.0.1:8080/v1").name  # doctest: +SKIP
        'default @ http://127.0.0.1:8080/v1'
    """
    if base_url:
        return OpenAIChatLLM(base_url, model or "default", api_key=api_key,
                             timeout_s=timeout_s, retries=retries)
    return InProcessLLM(shared_causal_lm(model or DEFAULT_PLANNER, dtype=dtype, device=device))
