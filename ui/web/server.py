"""The web chat: the page and its API on one origin, built by :func:`create_app`.

``POST /api/chat`` and ``POST /api/resume`` stream a turn as server-sent events:
``conversation`` first, a ``status`` at once (before any model work), then the agent's
events (plan, node, sources, token, clarify, answer), ``heartbeat`` during quiet phases,
``error`` on failure, and ``done`` always last. ``/api/stop`` stops a turn; ``GET
/api/threads/{id}`` returns a conversation (kept in SQLite, so it survives a restart);
``/api/search`` runs one retrieval pipeline; ``/api/health`` says what is served. The
OpenAPI schema is at ``/openapi.json`` and Swagger UI at ``/docs``, served from the
``swagger-ui-bundle`` package, so neither the page nor the docs need the internet.

Nothing happens at import: the index opens and the models load in the app's lifespan,
in a background thread, so requests are answered (and streams show status) meanwhile.

Example:
    >>> app = create_app(load_settings({"index": "demo-index"}))   # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)              # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from pursuit.agent.session import AgentSession
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.stage import Stage
from pursuit.ui.settings import Settings
from pursuit.ui.web.api import (
    ERROR_RESPONSES,
    ApiGuard,
    ChatRequest,
    ResumeRequest,
    SearchRequest,
    StopRequest,
    add_error_handlers,
)
from pursuit.ui.web.chatagent import AgentLoader, ChatAgent
from pursuit.ui.web.conversations import ConversationStore
from pursuit.ui.web.guards import HostGuard, SecurityHeaders, allowed_hosts
from pursuit.ui.web.history import conversation_json, search_json
from pursuit.ui.web.runs import Run, RunManager

__all__ = ["STATIC_DIR", "create_app"]

#: The chat page's files (``index.html``, ``app.js``, ``style.css``).
STATIC_DIR = Path(__file__).resolve().parent / "static"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_SSE_DOC: dict[int | str, dict[str, Any]] = {200: {
    "description": "Server-sent events: conversation, status, plan, node, sources, token, "
                   "clarify, answer, error, heartbeat; done always last.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
#: Makes the agent: a :class:`ChatAgent`, or one :class:`AgentSession` for every request.
SessionFactory = Callable[[], ChatAgent | AgentSession]


@dataclass
class _State:
    """What the routes share while the app runs (set up in the lifespan)."""

    settings: Settings
    runs: RunManager
    index: SearchIndex | None = None
    store: ConversationStore | None = None
    loader: AgentLoader | None = None
    stages: dict[str, Any] = field(default_factory=dict)
    stages_lock: threading.Lock = field(default_factory=threading.Lock)

    def agent(self) -> ChatAgent:
        agent = self.loader.agent if self.loader else None
        if agent is None:
            raise HTTPException(503, "the agent is still loading its models; try again shortly")
        return agent

    def model_name(self) -> str:
        agent = self.loader.agent if self.loader else None
        if agent is not None and agent.model:
            return agent.model
        s = self.settings
        return f"{s.llm_served} @ {s.llm_url}" if s.llm_url else s.llm


def create_app(settings: Settings, *, session_factory: SessionFactory | None = None) -> FastAPI:
    """The web chat application.

    Args:
        settings: Index, threads file, token, limits, CORS and the agent's model.
        session_factory: Makes the agent (default: load the configured models over the
            served index with :func:`~pursuit.ui.web.chatagent.load_chat_agent`); tests pass a
            session driven by a scripted model.
    """
    state = _State(settings, RunManager(settings.max_runs, settings.heartbeat_s))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        index = state.index = SearchIndex.open(settings.index_path)
        state.store = ConversationStore(settings.chat_path)
        factory = session_factory or _default_factory(index, settings)
        state.loader = AgentLoader(factory)
        state.loader.start()
        try:
            yield
        finally:
            state.runs.stop_all()
            state.store.close()
            index.close()

    app = FastAPI(title="pursuit", version="0.1.0", lifespan=lifespan, docs_url=None,
                  redoc_url=None, responses=ERROR_RESPONSES, description="Ask questions of a document index; answers "
                  "cite their sources. Chat turns stream as server-sent events.")
    add_error_handlers(app)
    _add_chat_routes(app, state)
    _add_other_routes(app, state)
    app.add_middleware(ApiGuard, token=settings.token, max_bytes=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders)
    if settings.cors_list:  # off unless asked for: only the page served here calls the API
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_list,
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    # Outermost: a request for another host name is refused before anything reads it.
    app.add_middleware(HostGuard, allowed=allowed_hosts(settings.host, settings.allowed_hosts))
    return app


#: Reranker options that choose what a process loads. Over the API the server's own models
#: serve every request: a caller cannot make it load a model (or a local folder) or keep
#: another copy in memory.
LOADING_OPTIONS = ("model", "dtype", "device")


def _configured_only(name: str, make: Callable[..., Stage]) -> Callable[..., Stage]:
    def build(**options: Any) -> Stage:
        named = [key for key in LOADING_OPTIONS if key in options]
        if named:
            raise PursuitError(f"{name}({named[0]}=...) is not available over the API: this "
                               f"server reranks with its own models; remove "
                               f"{', '.join(named)} from the pipeline")
        return make(**options)
    return build


def _default_factory(index: SearchIndex, settings: Settings) -> SessionFactory:
    def load() -> ChatAgent:
        from pursuit.ui.web.chatagent import load_chat_agent

        return load_chat_agent(index, settings)
    return load


def _stream(state: _State, run: Run, head: list[dict[str, Any]]) -> StreamingResponse:
    return StreamingResponse(state.runs.stream(run, head), media_type="text/event-stream",
                             headers=_SSE_HEADERS)


def _add_chat_routes(app: FastAPI, state: _State) -> None:
    @app.post("/api/chat", summary="Ask a question; the turn streams as server-sent events",
              response_class=StreamingResponse, responses=_SSE_DOC)
    async def chat(body: ChatRequest) -> StreamingResponse:
        store = state.store
        assert store is not None and state.loader is not None
        if body.conversation_id and not store.exists(body.conversation_id):
            raise HTTPException(404, f"unknown conversation {body.conversation_id!r}; leave "
                                "conversation_id out to start a new one")
        state.runs.reserve()
        try:
            cid = body.conversation_id or store.create()
            turn = store.add_turn(cid, body.message, as_of=body.as_of)
        except BaseException:
            state.runs.release()
            raise
        loader, clarify = state.loader, body.clarify

        def events(cancel: threading.Event) -> Any:
            session = loader.wait(cancel).for_request(clarify=clarify)
            return session.ask(turn.question, thread_id=turn.turn_id, as_of=turn.as_of)

        run = state.runs.launch(cid, turn.turn_id, events,
                                lambda err, paused: store.set_error(turn.turn_id, err))
        return _stream(state, run, [
            {"type": "conversation", "conversation_id": cid, "turn_id": turn.turn_id},
            {"type": "status", "phase": "clarify"}])

    @app.post("/api/resume", summary="Answer a turn's clarifying question; streams the rest",
              response_class=StreamingResponse, responses=_SSE_DOC)
    async def resume(body: ResumeRequest) -> StreamingResponse:
        store = state.store
        assert store is not None and state.loader is not None
        turn = store.turn(body.conversation_id, body.turn_id)
        if turn is None:
            raise HTTPException(404, f"conversation {body.conversation_id!r} has no turn "
                                f"{body.turn_id!r}")
        if state.runs.running(turn.turn_id):
            raise HTTPException(409, "this turn is still running; wait for its done event")
        agent = state.loader.agent
        if agent is not None and not agent.session.pending(turn.turn_id):
            raise HTTPException(409, "this turn is not waiting for an answer; ask a new "
                                "question instead")
        state.runs.reserve()
        loader, answer = state.loader, body.answer

        def events(cancel: threading.Event) -> Any:
            return loader.wait(cancel).session.resume(answer, thread_id=turn.turn_id)

        run = state.runs.launch(turn.conversation_id, turn.turn_id, events,
                                lambda err, paused: store.set_error(turn.turn_id, err))
        return _stream(state, run, [
            {"type": "conversation", "conversation_id": turn.conversation_id,
             "turn_id": turn.turn_id},
            {"type": "status", "phase": "clarify"}])

    @app.post("/api/stop", summary="Stop a running turn")
    async def stop(body: StopRequest) -> dict[str, bool]:
        return {"stopped": state.runs.stop(body.conversation_id, body.turn_id)}

    @app.get("/api/threads/{conversation_id}", summary="A conversation with all its turns")
    def threads(conversation_id: str) -> dict[str, Any]:
        store = state.store
        assert store is not None
        if not store.exists(conversation_id):
            raise HTTPException(404, f"unknown conversation {conversation_id!r}")
        return conversation_json(conversation_id, store.turns(conversation_id),
                                 state.agent().session)


def _add_other_routes(app: FastAPI, state: _State) -> None:
    @app.post("/api/search", summary="One retrieval pipeline over the served index")
    def search(body: SearchRequest) -> dict[str, Any]:
        assert state.index is not None
        with state.stages_lock:  # built once; the encoder loads on the first dense search
            if not state.stages:
                from pursuit.rerankers.registry import reranker_stages
                from pursuit.retrievers.registry import index_stages

                dtype = state.settings.dtype
                state.stages.update(index_stages(state.index, fetch_docs=True, dtype=dtype))
                state.stages.update({name: _configured_only(name, make) for name, make
                                     in reranker_stages(state.index.store, dtype=dtype).items()})
        return search_json(state.index, state.stages, body.query, k=body.k,
                           pipeline=body.pipeline, published_before=body.published_before)

    @app.get("/api/health", summary="What is served, and how busy it is")
    async def health() -> dict[str, Any]:
        index = state.index
        assert index is not None
        return {"status": "ok", "index": str(index.path), "documents": index.manifest.n_docs,
                "model": state.model_name(), "active_runs": state.runs.active,
                "ready": bool(state.loader and state.loader.agent is not None)}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return _static_file("index.html")

    @app.get("/static/{name:path}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        return _static_file(name)

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="pursuit API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")


def _static_file(name: str) -> FileResponse:
    """A file of the page; 404 for anything else, naming the file but not where pursuit is
    installed (a visitor has no business knowing the server's paths)."""
    root = STATIC_DIR.resolve()
    try:
        path = (root / name).resolve()
    except (ValueError, OSError):  # a NUL byte or an unreadable name: no such file
        path = root / "missing"
    if not path.is_relative_to(root) or not path.is_file():
        if name == "index.html":
            raise HTTPException(404, "the chat page is missing from this installation; "
                                "reinstall pursuit or use the API under /api (see /docs)")
        raise HTTPException(404, f"there is no file {name!r} here; the chat page is at /")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})
