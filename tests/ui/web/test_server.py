"""The web chat server end to end: a real uvicorn on 127.0.0.1, a scripted model, a real index."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from polling import wait_until
from scripted_agent import CORPUS, SEQUEL, AskOnce, Hook, ScriptedAgent

from pursuit.agent.config import AgentConfig
from pursuit.agent.graph import build_graph, sqlite_checkpointer
from pursuit.agent.llm.contract import LLMError, ScriptedLLM
from pursuit.agent.prompts import PLANNER, REVIEWER, SYNTHESISER
from pursuit.agent.searcher import SearchTools
from pursuit.agent.session import AgentSession
from pursuit.indexes.collection import SearchIndex
from pursuit.ui.settings import Settings
from pursuit.ui.web import server as server_module
from pursuit.ui.web.chatagent import ChatAgent
from pursuit.ui.web.server import create_app

DOCS = [*CORPUS, SEQUEL]
PLAN = {"nodes": [{"id": "n1", "question": "Who wrote Dune?", "depends_on": []}]}
FINAL = "Frank Herbert wrote Dune [1]."


def agent_script(hook: Hook | None = None) -> ScriptedAgent:
    """The model for one planned sub-question; ``hook(kind, question)`` runs first."""
    return ScriptedAgent(plan=PLAN, answers="Frank Herbert wrote Dune [1].", final=FINAL,
                         hook=hook)


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("server") / "idx"
    SearchIndex.build(DOCS, path, source="t").close()
    return path


def settings_for(index_path: Path, tmp: Path, **extra: Any) -> Settings:
    return Settings(cache_dir=tmp, index=str(index_path), threads=str(tmp / "threads.sqlite"),
                    **extra)


def factory(settings: Settings, llm: ScriptedLLM, clarifier: Any = None) -> Callable[[], ChatAgent]:
    def make() -> ChatAgent:
        index = SearchIndex.open(settings.index_path)
        config = AgentConfig(rerank=None, clarify=clarifier is not None)
        tools = SearchTools.over(index, config)
        graph = build_graph(config, llm=llm, tools=tools, clarifier=clarifier,
                            checkpointer=sqlite_checkpointer(settings.threads_path))
        return ChatAgent(AgentSession(graph), model="scripted")
    return make


@contextmanager
def serve(settings: Settings, make: Callable[[], Any]) -> Iterator[httpx.Client]:
    """The app under a real uvicorn on a free loopback port; yields a client for it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings, session_factory=make), log_level="warning",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def read_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield kind, json.loads(line.removeprefix("data: "))


def chat(client: httpx.Client, path: str = "/api/chat", **body: Any) -> list[tuple[str, dict]]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(read_events(response))


def test_chat_streams_the_turn_and_keeps_the_conversation(index_path: Path,
                                                          tmp_path: Path) -> None:
    settings = settings_for(index_path, tmp_path)
    with serve(settings, factory(settings, ScriptedLLM(default=agent_script()))) as client:
        events = chat(client, message="Who wrote Dune?")
        kinds = [k for k, _ in events if k != "heartbeat"]
        assert kinds == ["conversation", "status", "status", "status", "plan", "node", "sources",
                         "node", "status", "status", *["token"] * 5, "answer", "done"]
        head, done = events[0][1], events[-1][1]
        assert done == {**head, "paused": False}
        assert [d["phase"] for k, d in events if k == "status"] == [
            "clarify", "clarify", "plan", "review", "synthesize"]
        assert "".join(d["text"] for k, d in events if k == "token") == FINAL
        answer = next(d for k, d in events if k == "answer")["answer"]
        assert answer["text"] == FINAL and answer["citations"][0]["doc_id"] == "dune"
        sources = next(d for k, d in events if k == "sources")
        assert sources["node_id"] == "n1" and sources["passages"][0]["doc_id"] == "dune"

        again = chat(client, message="And who wrote Dune?", conversation_id=head["conversation_id"])
        assert again[0][1]["conversation_id"] == head["conversation_id"]
        thread = client.get(f"/api/threads/{head['conversation_id']}").json()
    assert [t["turn_id"] for t in thread["turns"]] == [head["turn_id"], again[0][1]["turn_id"]]
    first = thread["turns"][0]
    assert first["question"] == "Who wrote Dune?" and first["error"] is None
    assert first["answer"]["text"] == FINAL and first["pending"] is None
    assert list(first["plan"]) == ["n1"] and first["answers"]["n1"]["answer"] == FINAL


def test_clarify_then_resume_after_a_restart(index_path: Path, tmp_path: Path) -> None:
    settings = settings_for(index_path, tmp_path)
    llm = ScriptedLLM(default=agent_script())
    with serve(settings, factory(settings, llm, AskOnce())) as client:
        events = chat(client, message="Who made Dune?")
        ids = events[0][1]
        assert [k for k, _ in events] == ["conversation", "status", "status", "clarify", "done"]
        assert events[3][1] == {"question": "Do you mean the novel or the film?",
                                "options": ["novel", "film"]}
        assert events[-1][1] == {**ids, "paused": True}
    assert llm.calls == []  # nothing planned before the user answers
    # A new app on the same files, as after a server restart.
    with serve(settings, factory(settings, llm, AskOnce())) as client:
        thread = client.get(f"/api/threads/{ids['conversation_id']}").json()
        assert thread["turns"][0]["pending"] == {"question": "Do you mean the novel or the film?",
                                                 "options": ["novel", "film"]}
        events = chat(client, "/api/resume", answer="Novel", **ids)
        assert events[0] == ("conversation", ids) and events[-1] == ("done", {**ids, "paused": False})
        assert next(d for k, d in events if k == "answer")["answer"]["text"] == FINAL
        turn = client.get(f"/api/threads/{ids['conversation_id']}").json()["turns"][0]
        again = client.post("/api/resume", json={**ids, "answer": "film"})
    assert turn["clarifications"] == [{"question": "Do you mean the novel or the film?",
                                       "options": ["novel", "film"], "answer": "novel"}]
    assert turn["pending"] is None and turn["answer"]["text"] == FINAL
    assert again.status_code == 409
    assert again.json() == {"error": "this turn is not waiting for an answer; ask a new "
                                     "question instead"}


def test_token_is_required_when_set(index_path: Path, tmp_path: Path) -> None:
    settings = settings_for(index_path, tmp_path, token="s3cret")
    with serve(settings, factory(settings, ScriptedLLM(default=agent_script()))) as client:
        missing = client.get("/api/health")
        wrong = client.get("/api/health", headers={"Authorization": "Bearer nope"})
        right = client.get("/api/health", headers={"Authorization": "Bearer s3cret"})
        schema = client.get("/openapi.json")
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"].startswith("this server needs its token: send the header "
                                              "'Authorization: Bearer <token>'")
    assert right.status_code == 200 and right.json()["status"] == "ok"
    assert schema.status_code == 200


def test_oversized_bodies_are_refused(index_path: Path, tmp_path: Path) -> None:
    settings = settings_for(index_path, tmp_path, max_request_bytes=1024)
    message = {"error": "the request body is larger than 1024 bytes; send a shorter message"}
    with serve(settings, factory(settings, ScriptedLLM(default=agent_script()))) as client:
        declared = client.post("/api/chat", json={"message": "x" * 2000})
        chunked = client.post("/api/chat", content=iter([b'{"message": "', b"y" * 1500, b'"}']))
        health = client.get("/api/health").json()
    assert (declared.status_code, declared.json()) == (413, message)
    assert (chunked.status_code, chunked.json()) == (413, message)
    assert health["active_runs"] == 0


def gate_at(kind: str) -> tuple[threading.Event, threading.Event, Hook]:
    """A hook that blocks the model at ``kind`` until released; ``reached`` is set on arrival."""
    reached, release = threading.Event(), threading.Event()

    def hook(asked: str, question: str) -> None:
        if asked == kind:
            reached.set()
            assert release.wait(10)
    return reached, release, hook


def test_run_limit_stop_and_status_before_model_work(index_path: Path, tmp_path: Path) -> None:
    settings = settings_for(index_path, tmp_path, max_runs=1)
    reached, release, hook = gate_at(PLANNER)
    llm = ScriptedLLM(default=agent_script(hook))
    with serve(settings, factory(settings, llm)) as client:
        with client.stream("POST", "/api/chat", json={"message": "Who wrote Dune?"}) as response:
            events = read_events(response)
            started = time.monotonic()
            (k1, ids), (k2, status) = next(events), next(events)
            assert (k1, k2, status) == ("conversation", "status", {"phase": "clarify"})
            assert time.monotonic() - started < 1.0
            assert reached.wait(5)  # the model is busy with this run now
            busy = client.post("/api/chat", json={"message": "Another question"})
            assert client.get("/api/health").json()["active_runs"] == 1
            stopped = client.post("/api/stop", json=ids).json()
            rest = [(k, d) for k, d in events if k != "heartbeat"]
        release.set()
        wait_until(lambda: client.get("/api/health").json()["active_runs"] == 0)
        turn = client.get(f"/api/threads/{ids['conversation_id']}").json()["turns"][0]
        unknown = client.post("/api/stop", json=ids).json()
    assert (busy.status_code, busy.json()) == (429, {"error": "too many questions at once; "
                                                              "try again shortly"})
    assert busy.headers["retry-after"] == "5"
    assert stopped == {"stopped": True} and unknown == {"stopped": False}
    assert rest[-2:] == [("error", {"message": "stopped"}), ("done", {**ids, "paused": False})]
    assert turn["error"] == "stopped" and turn["answer"] is None
    assert not any(c[0]["content"] == SYNTHESISER for c in llm.calls)


def test_client_disconnect_cancels_its_run(index_path: Path, tmp_path: Path) -> None:
    settings = settings_for(index_path, tmp_path)
    reached, release, hook = gate_at(PLANNER)
    llm = ScriptedLLM(default=agent_script(hook))
    with serve(settings, factory(settings, llm)) as client:
        with client.stream("POST", "/api/chat", json={"message": "Who wrote Dune?"}) as response:
            events = read_events(response)  # kept: dropping it would close the stream now
            ids = next(events)[1]
            assert reached.wait(5)
        # Leaving the block closed the connection: the server cancels the run.
        time.sleep(0.3)
        release.set()
        wait_until(lambda: client.get("/api/health").json()["active_runs"] == 0)
        turn = client.get(f"/api/threads/{ids['conversation_id']}").json()["turns"][0]
    assert turn["error"] == "stopped"
    assert [c[0]["content"] for c in llm.calls] == [PLANNER]  # nothing ran after the plan


def test_failures_become_error_then_done(index_path: Path, tmp_path: Path) -> None:
    def hook(kind: str, question: str) -> None:
        if kind == SYNTHESISER:
            raise LLMError("model server at http://127.0.0.1:9/v1 is down; start it")
        if kind == REVIEWER:
            raise RuntimeError("boom")

    settings = settings_for(index_path, tmp_path)
    with serve(settings, factory(settings, ScriptedLLM(default=agent_script(hook)))) as client:
        events = chat(client, message="Who wrote Dune?")
        ids = events[0][1]
        turn = client.get(f"/api/threads/{ids['conversation_id']}").json()["turns"][0]
    assert events[-2:] == [("error", {"message": "the server failed while answering "
                                                 "(RuntimeError: boom); the server log has "
                                                 "the details"}),
                           ("done", {**ids, "paused": False})]
    assert "answer" not in [k for k, _ in events]
    assert turn["error"].startswith("the server failed while answering (RuntimeError: boom)")

    # A model error in the last phase (after sub-answers were streamed) is reported verbatim.
    settings = settings_for(index_path, tmp_path / "b")
    llm = ScriptedLLM(default=agent_script(
        lambda k, q: hook(k, q) if k == SYNTHESISER else None))
    with serve(settings, factory(settings, llm)) as client:
        events = chat(client, message="Who wrote Dune?")
    assert "sources" in [k for k, _ in events]
    assert events[-2] == ("error", {"message": "model server at http://127.0.0.1:9/v1 is down; "
                                               "start it"})
    assert events[-1][0] == "done"


def test_heartbeats_while_the_model_is_quiet(index_path: Path, tmp_path: Path) -> None:
    settings = settings_for(index_path, tmp_path, heartbeat_s=0.1)
    llm = ScriptedLLM(default=agent_script(
        lambda k, q: time.sleep(0.45) if k == PLANNER else None))
    with serve(settings, factory(settings, llm)) as client:
        kinds = [k for k, _ in chat(client, message="Who wrote Dune?")]
    before_plan = kinds[:kinds.index("plan")]
    assert before_plan.count("heartbeat") >= 3
    assert kinds[-1] == "done" and kinds.count("done") == 1


def test_search_health_and_request_errors(index_path: Path, tmp_path: Path) -> None:
    settings = settings_for(index_path, tmp_path)
    with serve(settings, factory(settings, ScriptedLLM(default=agent_script()))) as client:
        wait_until(lambda: client.get("/api/health").json()["ready"])
        health = client.get("/api/health").json()
        found = client.post("/api/search", json={"query": "Frank Herbert born", "k": 2}).json()
        dated = client.post("/api/search", json={"query": "Dune Messiah sequel", "k": 4,
                                                 "published_before": "2021-01-01"}).json()
        bad_pipeline = client.post("/api/search", json={"query": "x", "pipeline": "dense"})
        empty = client.post("/api/chat", json={"message": "   "})
        bad_date = client.post("/api/chat", json={"message": "hi", "as_of": "yesterday"})
        not_json = client.post("/api/chat", content=b"{nope", headers={
            "Content-Type": "application/json"})
        unknown = client.post("/api/chat", json={"message": "hi", "conversation_id": "nope"})
        no_thread = client.get("/api/threads/nope")
        no_route = client.get("/api/nothing")
    assert health == {"status": "ok", "index": str(index_path), "documents": 4,
                      "model": "scripted", "active_runs": 0, "ready": True}
    assert found["query"] == "Frank Herbert born" and found["pipeline"] == "bm25"
    assert [h["doc_id"] for h in found["hits"]] == ["herbert", "dune"]
    assert found["hits"][0]["title"] == "Frank Herbert"
    assert found["hits"][0]["text"] == DOCS[1].text
    assert "sequel" not in [h["doc_id"] for h in dated["hits"]] and dated["hits"]
    assert bad_pipeline.status_code == 400 and "no dense vectors" in bad_pipeline.json()["error"]
    assert (empty.status_code, empty.json()) == (422, {"error": "message: is empty; type something"})
    assert bad_date.json() == {"error": "as_of: 'yesterday' is not an ISO date; write it like "
                                        "2024-05-31"}
    assert (not_json.status_code, not_json.json()) == (
        422, {"error": "the request body is not valid JSON; send a JSON object"})
    assert (unknown.status_code, unknown.json()) == (
        404, {"error": "unknown conversation 'nope'; leave conversation_id out to start a new one"})
    assert (no_thread.status_code, no_thread.json()) == (
        404, {"error": "unknown conversation 'nope'"})
    assert no_route.status_code == 404 and no_route.json()["error"].startswith("nothing at")


def test_page_docs_and_cors(index_path: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    static = tmp_path / "static"
    static.mkdir()
    monkeypatch.setattr(server_module, "STATIC_DIR", static)
    origin = {"Origin": "http://elsewhere.test"}
    settings = settings_for(index_path, tmp_path)
    with serve(settings, factory(settings, ScriptedLLM(default=agent_script()))) as client:
        missing = client.get("/")
        (static / "index.html").write_text("<h1>chat</h1>")
        (static / "app.js").write_text("console.log(1)")
        page, script = client.get("/"), client.get("/static/app.js")
        escape = client.get("/static/..%2Fsecret.txt")
        docs = client.get("/docs").text
        bundle = client.get("/docs/assets/swagger-ui-bundle.js")
        schema = client.get("/openapi.json").json()
        no_cors = client.get("/api/health", headers=origin)
    allowed = settings_for(index_path, tmp_path, cors_origins="http://elsewhere.test")
    with serve(allowed, factory(allowed, ScriptedLLM(default=agent_script()))) as client:
        cors = client.get("/api/health", headers=origin)
    assert missing.status_code == 404
    assert missing.json()["error"] == ("the chat page is missing from this installation; "
                                       "reinstall pursuit or use the API under /api (see /docs)")
    assert str(static) not in missing.text  # a visitor never learns the server's paths
    assert page.text == "<h1>chat</h1>" and script.text == "console.log(1)"
    assert "javascript" in script.headers["content-type"]
    assert escape.status_code == 404
    assert "/docs/assets/swagger-ui-bundle.js" in docs and "http" not in docs
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert {"/api/chat", "/api/resume", "/api/stop", "/api/threads/{conversation_id}",
            "/api/search", "/api/health"} <= set(schema["paths"])
    assert "access-control-allow-origin" not in no_cors.headers
    assert cors.headers["access-control-allow-origin"] == "http://elsewhere.test"
