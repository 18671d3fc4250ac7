"""The web chat's request bodies, its guard (token and body size) and its error bodies.

Every error the API returns is ``{"error": "<what is wrong and what to do>"}``, whatever
raised it: a validation failure (422), an unknown route (404), a missing or wrong token
(401), an oversized body (413), too many runs at once (429) or a bug (500).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.filters import as_utc
from pursuit.retrievers.pipeline_parser import PipelineError, largest_depth
from pursuit.ui.web.runs import RunLimitError, describe

__all__ = ["ERROR_RESPONSES", "ApiGuard", "ChatRequest", "ErrorBody", "ResumeRequest",
           "SearchRequest", "StopRequest", "add_error_handlers", "error"]


def _iso_date(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        as_utc(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO date; write it like 2024-05-31") from None
    return value.strip()


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty; type something")
    return value.strip()


#: The most documents one stage of an ``/api/search`` pipeline may ask for (``%`` or ``k=``):
#: memory is sized by it, so a request cannot make the server allocate without bound.
MAX_DEPTH = 10_000


def _depth(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        depth = largest_depth(value)
    except PipelineError:
        return value  # the pipeline's own parser reports it, with its position
    if depth > MAX_DEPTH:
        raise ValueError(f"asks one stage for {depth:,} documents; this server allows at most "
                         f"{MAX_DEPTH:,} (e.g. bm25%1000)")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatRequest(_Body):
    """``POST /api/chat``: a question, in a new or an existing conversation."""

    message: str = Field(max_length=4000)
    conversation_id: str | None = None
    as_of: str | None = None
    clarify: bool = True

    check_message = field_validator("message")(_text)
    check_as_of = field_validator("as_of")(_iso_date)


class ResumeRequest(_Body):
    """``POST /api/resume``: the user's answer to a turn's clarifying question."""

    conversation_id: str
    turn_id: str
    answer: str = Field(max_length=1000)

    check_answer = field_validator("answer")(_text)


class StopRequest(_Body):
    """``POST /api/stop``: stop a turn's run."""

    conversation_id: str
    turn_id: str


class SearchRequest(_Body):
    """``POST /api/search``: one retrieval pipeline over the served index."""

    query: str = Field(max_length=2000)
    k: int = Field(default=10, ge=1, le=100)
    pipeline: str | None = Field(default=None, max_length=2000)
    published_before: str | None = None

    check_query = field_validator("query")(_text)
    check_before = field_validator("published_before")(_iso_date)
    check_pipeline = field_validator("pipeline")(_depth)


class ErrorBody(BaseModel):
    """Every error response: what is wrong and what to do."""

    error: str


#: The error responses every API route documents (the schema of each is :class:`ErrorBody`).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what} for code, what in (
        (401, "The server has a token and the request did not send it"),
        (413, "The request body is too large"),
        (422, "The request body is not valid"),
        (429, "Too many questions at once"))}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error response with the API's body."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for item in exc.errors():
        loc = [str(p) for p in item.get("loc", ()) if p != "body"]
        if item.get("type") == "json_invalid":
            return "the request body is not valid JSON; send a JSON object"
        msg = str(item.get("msg", "is not valid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc) or 'body'}: {msg}")
    return "; ".join(parts) or "the request body is not valid"


def add_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` an ``{"error": ...}`` body."""

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error(422, _validation_message(exc))

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"nothing at {request.url.path}; the API is under /api (see /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error(exc.status_code, message, dict(exc.headers or {}))

    async def too_many(request: Request, exc: Exception) -> JSONResponse:
        return error(429, str(exc), {"Retry-After": "5"})

    async def ours(request: Request, exc: Exception) -> JSONResponse:
        return error(400, str(exc))

    async def bug(request: Request, exc: Exception) -> JSONResponse:
        return error(500, describe(exc))

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(RunLimitError, too_many)
    app.add_exception_handler(PursuitError, ours)
    app.add_exception_handler(Exception, bug)


class ApiGuard:
    """ASGI middleware for ``/api/*``: the bearer token, then the body size limit.

    The body is read here (at most ``max_bytes``) and replayed to the app, so a body sent
    in chunks without a ``Content-Length`` is limited too; after the replay, ``receive``
    passes through, so the app still hears about a client that disconnects.

    Args:
        app: The wrapped application.
        token: The required bearer token (empty: none).
        max_bytes: Largest body accepted.
    """

    def __init__(self, app: ASGIApp, *, token: str, max_bytes: int) -> None:
        self.app, self.token, self.max_bytes = app, token, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/") \
                or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if self.token and not self._authorised(headers.get("authorization", "")):
            await _reply(send, 401, "this server needs its token: send the header "
                         "'Authorization: Bearer <token>' (the page takes it from its "
                         "address, e.g. http://127.0.0.1:8000/#token=<token>)",
                         {"WWW-Authenticate": "Bearer"})
            return
        too_big = (f"the request body is larger than {self.max_bytes} bytes; "
                   "send a shorter message")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _reply(send, 413, too_big)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _reply(send, 413, too_big)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorised(self, header: str) -> bool:
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  self.token.encode())


async def _reply(send: Send, status: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw: list[Any] = [(b"content-type", b"application/json"),
                      (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
