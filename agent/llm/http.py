"""A chat model over HTTP: any OpenAI-compatible ``/chat/completions`` server.

vLLM, llama.cpp's server, Ollama and hosted APIs all speak it. Whole answers and
server-sent event streams (with the usage the server reports), retries with back-off on
connection errors, timeouts, 429 and 5xx, and errors that name the URL and what to check.

Example:
    >>> llm = OpenAIChatLLM("http://127.0.0.1:8080/v1", "qwen")  # doctest: +SKIP
    >>> llm.complete([user("What is 2+3? Answer with the number only.")]).text  # doctest: +SKIP
    '5'
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from pursuit.agent.llm.contract import (
    Completion,
    LLMError,
    Message,
    TextStream,
    current_cancel,
)
from pursuit.agent.llm.stops import StopCut

__all__ = ["OpenAIChatLLM"]


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
        cancel = current_cancel()
        response = self._send(self._body(messages, max_tokens, temperature, stop, False),
                              cancel=cancel)
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise LLMError(f"the model server at {self.url} sent a reply that is not an OpenAI "
                           f"chat completion: {response.text[:300]!r}") from None
        cut = StopCut(stop)
        text = cut.feed(text) + cut.flush()
        return Completion(text, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 512,
               temperature: float = 0.0, stop: Sequence[str] | None = None) -> TextStream:
        """The answer piece by piece from the server's event stream. The request asks for
        usage (``stream_options.include_usage``); a server that sends it fills the
        stream's token counts, one that does not leaves them ``None``."""
        body = self._body(messages, max_tokens, temperature, stop, True)
        cancel = current_cancel()  # the run's flag, read where the stream is asked for
        return TextStream(lambda counts: self._events(body, stop, counts, cancel))

    def _events(self, body: dict[str, Any], stop: Sequence[str] | None,
                counts: TextStream, cancel: threading.Event | None) -> Iterator[str]:
        response = self._send(body, stream=True, cancel=cancel)
        cut = StopCut(stop)
        finished = threading.Event()
        if cancel is not None:  # a stop closes the connection at once, mid-read included
            threading.Thread(target=_close_on, args=(cancel, finished, response),
                             daemon=True).start()
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
        except (httpx.HTTPError, httpx.StreamError) as exc:
            if cancel is not None and cancel.is_set():
                return  # stopped: the answer ends where it was, like an in-process one
            if isinstance(exc, httpx.TimeoutException):
                raise LLMError(f"the model server at {self.url} stopped sending within "
                               f"{self.timeout_s:g} s; raise the timeout or check the "
                               "server") from None
            raise LLMError(f"the stream from the model server at {self.url} broke: {exc}; "
                           "check the server's log") from exc
        finally:
            finished.set()
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

    def _send(self, body: dict[str, Any], *, stream: bool = False,
              cancel: threading.Event | None = None) -> httpx.Response:
        """POST ``body``, retrying what may pass; a 200 response (left open when streaming).

        Nothing is sent or retried once ``cancel`` is set: a stopped run frees its slot.
        """
        attempts, problem = self.retries + 1, ""
        for attempt in range(attempts):
            if cancel is not None and cancel.is_set():
                raise LLMError("the run was stopped before the model server answered")
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
                # A stop ends the pause early; the check at the loop's top then ends the loop.
                if cancel is not None:
                    cancel.wait(wait)
                else:
                    time.sleep(wait)
        raise LLMError(f"{problem} (gave up after {attempts} attempt"
                       f"{'s' if attempts != 1 else ''})")

    def _retry_after(self, response: httpx.Response, default: float) -> float:
        try:
            seconds = float(response.headers.get("Retry-After", ""))
        except ValueError:
            return default
        return min(max(seconds, 0.0), self.max_retry_after_s)


def _close_on(cancel: threading.Event, finished: threading.Event,
              response: httpx.Response) -> None:
    """Close ``response`` as soon as ``cancel`` is set, unless the stream finishes first."""
    while not finished.is_set():
        if cancel.wait(0.05):
            response.close()
            return
