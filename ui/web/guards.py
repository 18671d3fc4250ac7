"""What every response of the web chat's server checks and carries: the Host, and headers.

A page on another site can point a DNS name at 127.0.0.1 ("DNS rebinding") and then read a
local server as its own origin. The browser still sends that name in ``Host``, so
:class:`HostGuard` answers only requests that name this server: loopback names when it
listens on loopback, the bind host and the configured names otherwise.
:class:`SecurityHeaders` adds a Content-Security-Policy (with ``frame-ancestors 'none'``,
which a ``<meta>`` policy cannot set, so no other site can frame the chat),
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` to every response,
``/docs`` included.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LOOPBACK_NAMES", "HostGuard", "SecurityHeaders", "allowed_hosts"]

#: Names a browser on this machine uses for a server on loopback.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

#: The chat page loads only its own files; Swagger UI at /docs also runs one inline script.
_CSP = ("default-src 'self'; script-src 'self'{inline}; style-src 'self'{inline}; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'")


def allowed_hosts(bind_host: str, configured: str) -> frozenset[str] | None:
    """The ``Host`` names a server bound to ``bind_host`` answers (``None``: any).

    Args:
        bind_host: Where the server listens (``127.0.0.1``, ``0.0.0.0``, a name...).
        configured: Comma-separated extra names (``PURSUIT_ALLOWED_HOSTS``); ``*`` allows any.
    """
    extra = {h.strip().lower().strip("[]") for h in configured.split(",") if h.strip()}
    if "*" in extra:
        return None
    host = bind_host.lower().strip("[]")
    if host in LOOPBACK_NAMES:
        return frozenset(LOOPBACK_NAMES | extra)
    if host in ("0.0.0.0", "::") and not extra:
        return None  # every interface, no names given: the token is what protects it
    return frozenset(LOOPBACK_NAMES | extra | ({host} - {"0.0.0.0", "::"}))


def _host_name(value: str) -> str:
    """``Host`` without its port: ``example.com:8000`` -> ``example.com``, ``[::1]:80`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostGuard:
    """ASGI middleware: 400 for a request whose ``Host`` is not one this server answers."""

    def __init__(self, app: ASGIApp, *, allowed: frozenset[str] | None) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.allowed is not None:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", [])
                         if k == b"host"), "")
            if _host_name(host) not in self.allowed:
                body = json.dumps({"error": (
                    f"this server does not answer for the host {host!r}; open it as "
                    "http://127.0.0.1:PORT/, or list the name in PURSUIT_ALLOWED_HOSTS")})
                await send({"type": "http.response.start", "status": 400, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: the security headers above on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = _CSP.format(inline=" 'unsafe-inline'" if scope["path"] == "/docs" else "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"content-security-policy",
                                                b"x-content-type-options", b"referrer-policy")]
                headers += [(b"content-security-policy", csp.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
