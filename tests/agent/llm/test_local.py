"""agent.http_llm and agent.clients: the OpenAI-compatible client against a real local HTTP
server (plain and streamed answers, retries, refusals, an unreachable port, a timeout) and
the in-process model on a tiny random Qwen2 (determinism, streaming, token bounds, stop
strings, threads); one check with the packaged Qwen2.5-Coder-0.5B."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import torch
from tiny_lm import tiny_lm  # noqa: E402
from transformers import DynamicCache

from pursuit.agent.llm.contract import LLMClient, LLMError, system, user
from pursuit.agent.llm.http import OpenAIChatLLM
from pursuit.agent.llm.local import InProcessLLM, _model_lock, load_llm
from pursuit.agent.llm.prefix_cache import PrefixKVCache
from pursuit.retrievers.lm.causal import wrap_causal_lm

MESSAGES = [system("Be brief."), user("What is 2+3?")]


@dataclass
class FakeServer:
    """What the server answers, and every request it got."""

    pieces: list[str] = field(default_factory=lambda: ["Fi", "ve", ".", " Done."])
    failures: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    delay_s: float = 0.0
    raw_reply: str | None = None
    stream_usage: dict[str, int] | None = None  # sent last in a stream that asks for it
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""


def _handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: str, headers: dict[str, str]) -> None:
            data = body.encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.requests.append({"path": self.path, **body})
            fake.headers.append(dict(self.headers))
            if fake.delay_s and fake.release.wait(fake.delay_s):
                return
            try:
                if fake.failures:
                    self._send(*fake.failures.pop(0))
                elif fake.raw_reply is not None:
                    self._send(200, fake.raw_reply, {})
                elif body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    chunks = [{"choices": [{"delta": {"role": "assistant"}}]}]
                    chunks += [{"choices": [{"delta": {"content": p}}]} for p in fake.pieces]
                    if fake.stream_usage and body.get("stream_options", {}).get("include_usage"):
                        chunks.append({"choices": [], "usage": fake.stream_usage})
                    for chunk in chunks:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                else:
                    reply = {"choices": [{"message": {"role": "assistant",
                                                      "content": "".join(fake.pieces)}}],
                             "usage": {"prompt_tokens": 11, "completion_tokens": 4}}
                    self._send(200, json.dumps(reply), {})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (the timeout test)

    return Handler


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    httpd.daemon_threads = True
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    httpd.shutdown()
    httpd.server_close()


def _client(fake: FakeServer, **kwargs: Any) -> OpenAIChatLLM:
    options: dict[str, Any] = {"retries": 3, "backoff_s": 0.01, "timeout_s": 5.0, **kwargs}
    return OpenAIChatLLM(fake.url + "/", "tiny-model", **options)


def test_http_complete_sends_the_request_and_reads_text_and_usage(server: FakeServer) -> None:
    llm = _client(server, api_key="sk-test")
    out = llm.complete(MESSAGES, max_tokens=7, stop=["\n\n"])
    assert (out.text, out.prompt_tokens, out.completion_tokens) == ("Five. Done.", 11, 4)
    assert server.requests == [{"path": "/v1/chat/completions", "model": "tiny-model",
                                "messages": MESSAGES, "max_tokens": 7, "temperature": 0.0,
                                "stream": False, "stop": ["\n\n"]}]
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert llm.name == f"tiny-model @ {server.url}"
    assert isinstance(llm, LLMClient)


def test_http_stream_parses_server_sent_events_and_cuts_at_stop(server: FakeServer) -> None:
    llm = _client(server)
    assert list(llm.stream(MESSAGES, max_tokens=9)) == ["Fi", "ve", ".", " Done."]
    # the server ignores `stop`; the client still cuts, also across pieces ("e." spans two)
    assert "".join(llm.stream(MESSAGES, stop=["e."])) == "Fiv"
    assert llm.complete(MESSAGES, stop=["e."]).text == "Fiv"
    assert [r["stream"] for r in server.requests] == [True, True, False]
    assert server.requests[1]["stop"] == ["e."] and "stop" not in server.requests[0]


def test_http_stream_carries_the_usage_the_server_sends(server: FakeServer) -> None:
    llm = _client(server)
    plain = llm.stream(MESSAGES)
    assert "".join(plain) == "Five. Done."
    assert (plain.prompt_tokens, plain.completion_tokens, plain.reported_tokens) == (
        None, None, None)
    server.stream_usage = {"prompt_tokens": 11, "completion_tokens": 4}
    counted = llm.stream(MESSAGES)
    assert "".join(counted) == "Five. Done."
    assert (counted.prompt_tokens, counted.completion_tokens, counted.reported_tokens) == (
        11, 4, 15)
    assert [r["stream_options"] for r in server.requests] == [{"include_usage": True}] * 2


def test_http_retries_503_then_succeeds(server: FakeServer) -> None:
    server.failures = [(503, '{"error": "loading model"}', {})] * 2
    assert _client(server).complete(MESSAGES).text == "Five. Done."
    assert len(server.requests) == 3


def test_http_stream_retries_before_the_first_piece(server: FakeServer) -> None:
    server.failures = [(502, "bad gateway", {})]
    assert "".join(_client(server).stream(MESSAGES)) == "Five. Done."
    assert len(server.requests) == 2


def test_http_honours_retry_after_on_429(server: FakeServer) -> None:
    server.failures = [(429, "slow down", {"Retry-After": "0.3"})]
    start = time.perf_counter()
    assert _client(server).complete(MESSAGES).text == "Five. Done."
    assert time.perf_counter() - start >= 0.3
    assert len(server.requests) == 2


def test_http_gives_up_after_the_last_retry(server: FakeServer) -> None:
    server.failures = [(503, '{"error": "overloaded"}', {})] * 5
    with pytest.raises(LLMError) as info:
        _client(server, retries=2).complete(MESSAGES)
    assert str(info.value) == (
        f"the model server at {server.url}/chat/completions answered HTTP 503: "
        '{"error": "overloaded"}; check the server\'s log (gave up after 3 attempts)')
    assert len(server.requests) == 3


def test_http_400_is_not_retried_and_shows_the_server_error(server: FakeServer) -> None:
    body = '{"error": {"message": "model \'tiny-model\' not found"}}' + " " * 600
    server.failures = [(400, body, {})]
    with pytest.raises(LLMError) as info:
        _client(server).complete(MESSAGES)
    assert str(info.value) == (
        f"the model server at {server.url}/chat/completions refused the request with HTTP 400: "
        f"{body[:500]}; check the model name and the request")
    assert len(server.requests) == 1


def test_http_closed_port_names_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    llm = OpenAIChatLLM(url, "m", retries=1, backoff_s=0.01)
    with pytest.raises(LLMError) as info:
        llm.complete(MESSAGES)
    message = str(info.value)
    assert message.startswith(f"cannot reach the model server at {url}/chat/completions: ")
    assert "refused" in message.lower()
    assert message.endswith("; start it or set --llm-url (gave up after 2 attempts)")


def test_http_slow_server_times_out(server: FakeServer) -> None:
    server.delay_s = 5.0
    start = time.perf_counter()
    with pytest.raises(LLMError) as info:
        _client(server, timeout_s=0.2, retries=1).complete(MESSAGES)
    assert time.perf_counter() - start < 2.0
    assert str(info.value) == (
        f"the model server at {server.url}/chat/completions did not answer within 0.2 s; "
        "raise the timeout or ask for fewer tokens (gave up after 2 attempts)")
    assert len(server.requests) == 2


def test_http_reply_that_is_not_a_chat_completion(server: FakeServer) -> None:
    server.raw_reply = '{"result": "Five"}'
    with pytest.raises(LLMError) as info:
        _client(server).complete(MESSAGES)
    assert str(info.value) == (
        f"the model server at {server.url}/chat/completions sent a reply that is not an "
        "OpenAI chat completion: '{\"result\": \"Five\"}'")


def test_load_llm_with_base_url_is_the_http_client(server: FakeServer) -> None:
    llm = load_llm("served", base_url=server.url, timeout_s=3)
    assert isinstance(llm, OpenAIChatLLM) and llm.name == f"served @ {server.url}"
    assert llm.complete(MESSAGES).text == "Five. Done."
    assert server.requests[0]["model"] == "served"


@pytest.fixture(scope="module")
def tiny() -> InProcessLLM:
    lm = tiny_lm(seed=0)
    # Tied random embeddings make greedy decoding repeat the prompt's last token; an untied
    # random head gives varied text, which the stop-string checks need.
    shape = lm.model.lm_head.weight.shape
    weights = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.5
    lm.model.lm_head.weight = torch.nn.Parameter(weights)
    return InProcessLLM(wrap_causal_lm(lm.model, lm.tokenizer, "tiny"))


TIDES = [user("what causes tides?")]


def test_in_process_greedy_is_deterministic_and_streams_the_same_text(tiny: InProcessLLM) -> None:
    first, second = tiny.complete(TIDES, max_tokens=24), tiny.complete(TIDES, max_tokens=24)
    assert first == second and first.completion_tokens == 24 and len(first.text) > 10
    prompt = tiny.lm.tokenizer.apply_chat_template(TIDES, tokenize=False,
                                                   add_generation_prompt=True)
    assert first.prompt_tokens == len(tiny.lm.tokenizer(prompt).input_ids)
    stream = tiny.stream(TIDES, max_tokens=24)
    pieces = list(stream)
    assert len(pieces) > 5 and "".join(pieces) == first.text
    assert (stream.prompt_tokens, stream.completion_tokens) == (first.prompt_tokens, 24)
    assert tiny.name == "tiny" and isinstance(tiny, LLMClient)


def test_in_process_max_tokens_bounds_the_answer(tiny: InProcessLLM) -> None:
    full = tiny.complete(TIDES, max_tokens=24)
    short = tiny.complete(TIDES, max_tokens=5)
    assert short.completion_tokens == 5 and full.text.startswith(short.text)
    assert len(short.text) < len(full.text)


def test_in_process_stop_strings_cut_complete_and_stream(tiny: InProcessLLM) -> None:
    full = tiny.complete(TIDES, max_tokens=24).text
    stop = full[8:10]
    expected = full[:full.index(stop)]
    out = tiny.complete(TIDES, max_tokens=24, stop=["never appears", stop])
    assert out.text == expected and out.completion_tokens < 24
    assert "".join(tiny.stream(TIDES, max_tokens=24, stop=[stop])) == expected


def test_in_process_samples_when_temperature_is_positive(tiny: InProcessLLM) -> None:
    greedy = tiny.complete(TIDES, max_tokens=12)
    samples = []
    for _ in range(2):
        torch.manual_seed(7)
        samples.append(tiny.complete(TIDES, max_tokens=12, temperature=1.0))
    assert samples[0] == samples[1] and samples[0].text != greedy.text


def test_in_process_parallel_calls_share_one_model(tiny: InProcessLLM) -> None:
    expected = tiny.complete(TIDES, max_tokens=12).text
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda _: tiny.complete(TIDES, max_tokens=12).text, range(4)))
    assert texts == [expected] * 4


def test_in_process_closing_a_stream_stops_generation(tiny: InProcessLLM) -> None:
    pieces = tiny.stream(TIDES, max_tokens=4000)
    first = next(pieces)
    start = time.perf_counter()
    pieces.close()  # type: ignore[attr-defined]
    assert time.perf_counter() - start < 5.0 and first
    lock = _model_lock(tiny.lm.model)
    assert lock.acquire(blocking=False)
    lock.release()


@pytest.mark.model
def test_packaged_qwen_05b_answers_a_trivial_question() -> None:
    llm = load_llm("qwen2.5-coder-0.5b", device="cpu")
    out = llm.complete([user("What is 2+3? Answer with the number only.")], max_tokens=6)
    assert "5" in out.text and out.completion_tokens <= 6
    assert llm.name == "qwen2.5-coder-0.5b"


def test_in_process_generation_stops_when_its_run_is_stopped(tiny: InProcessLLM) -> None:
    import threading

    from pursuit.agent.llm.contract import cancel_scope

    stopped = threading.Event()
    stopped.set()
    with cancel_scope(stopped):
        out = tiny.complete(TIDES, max_tokens=24)
    assert out.completion_tokens == 1  # the criterion runs after each new token
    running = threading.Event()
    with cancel_scope(running):
        assert tiny.complete(TIDES, max_tokens=24).completion_tokens == 24


def test_prefix_cache_reuses_a_conversation_and_answers_exactly_as_without(
        tiny: InProcessLLM) -> None:
    cache = PrefixKVCache(min_tokens=8)
    cached = InProcessLLM(tiny.lm, name="tiny", prefix_cache=cache)
    plain = InProcessLLM(tiny.lm, name="tiny", prefix_cache=False)
    talk = [system("You are a helpful assistant. The moon pulls the ocean."), *TIDES]
    prompts = []
    for turn in range(3):
        want, got = plain.complete(talk, max_tokens=12), cached.complete(talk, max_tokens=12)
        assert got == want  # same text and token counts, turn after turn
        prompts.append(got.prompt_tokens)
        talk = [*talk, {"role": "assistant", "content": got.text},
                user(f"and then? ({turn})")]
    # turns 1 and 2 began with the earlier prompt (at least): only the tail was computed
    assert (cache.stats.hits, cache.stats.misses) == (2, 1)
    assert cache.stats.reused_tokens >= prompts[0] + prompts[1]
    assert cache.stats.prompt_tokens == sum(prompts)


def kv(n: int) -> DynamicCache:
    """A one-layer cache of ``n`` positions (640 bytes at n = 10)."""
    return DynamicCache(ddp_cache_data=[(torch.rand(1, 2, n, 4), torch.rand(1, 2, n, 4))])


def test_prefix_cache_copies_the_longest_prefix_and_keeps_its_entries() -> None:
    cache = PrefixKVCache(min_tokens=4)
    cache.put(torch.arange(10), kv(10))
    cache.put(torch.arange(100, 106), kv(6))
    taken = cache.take(torch.tensor([*range(7), 50, 51]))
    assert taken.get_seq_length() == 7
    stored = cache._entries[0][1].layers[0].keys
    assert torch.equal(taken.layers[0].keys, stored[:, :, :7])
    taken.update(torch.rand(1, 2, 3, 4), torch.rand(1, 2, 3, 4), 0)  # generating into it
    assert cache.take(torch.arange(12)).get_seq_length() == 10  # the entry is unchanged
    assert cache.take(torch.arange(10)).get_seq_length() == 9  # one token left to compute
    assert cache.take(torch.tensor([0, 1, 2, 9])).get_seq_length() == 0  # below min_tokens
    assert (cache.stats.hits, cache.stats.misses) == (3, 1)


def test_prefix_cache_drops_superseded_and_least_recent_entries() -> None:
    cache = PrefixKVCache(max_bytes=1300, min_tokens=4)
    cache.put(torch.arange(10), kv(10))
    cache.put(torch.arange(12), kv(12))  # begins with the first entry's tokens: replaces it
    assert len(cache) == 1 and cache.nbytes == 768
    cache.put(torch.arange(100, 110), kv(10))  # over budget: the older entry goes
    assert len(cache) == 1 and cache.take(torch.arange(12)).get_seq_length() == 0
    assert cache.take(torch.arange(100, 111)).get_seq_length() == 10
    cache.put(torch.arange(3), kv(3))  # too short to be worth keeping
    assert len(cache) == 1
