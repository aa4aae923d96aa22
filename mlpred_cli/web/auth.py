"""Who may read the dashboard, and the headers every response carries.

With a token set, a request needs ``Authorization: Bearer <token>`` (scripts) or the session
cookie that ``/login?token=<token>`` sets (browsers: HttpOnly, SameSite=Strict). The cookie
holds an HMAC of the token, not the token; both are compared in constant time. Without a
token (a loopback-only server) every request is let in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import cookie_parser

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "mlpred_session"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: an HMAC, so the cookie never holds it."""
    return hmac.new(token.encode(), b"mlpred dashboard session", hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    """Whether ``given`` is ``token`` (constant time)."""
    return hmac.compare_digest(given.encode(), token.encode())


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def authorised(scope: Scope, token: str | None) -> bool:
    """Whether the request carries the token (as a bearer header or the session cookie)."""
    if token is None:
        return True
    header = _header(scope, b"authorization")
    if header is not None and header[:7].lower() == "bearer ":
        return token_matches(header[7:].strip(), token)
    cookies = _header(scope, b"cookie")
    if cookies:
        # lenient, as browsers are: other cookies of the host (any port of localhost sends
        # them here) may hold values the strict http.cookies parser gives up on
        value = cookie_parser(cookies).get(SESSION_COOKIE)
        if value is not None:
            return hmac.compare_digest(value.encode(), session_value(token).encode())
    return False


#: The Host headers a server without a token answers: a page of another site that
#: re-points its own name at 127.0.0.1 (DNS rebinding) sends its own name and is refused.
LOOPBACK_HOSTS: frozenset[str] = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def host_name(scope: Scope) -> str:
    """The request's Host header without its port, lower-case ('' when absent)."""
    host = (_header(scope, b"host") or "").strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware: security headers on every response; 401 without the token; without
    a token, 421 for a Host header other than ``allowed_hosts``."""

    def __init__(
        self, app: ASGIApp, token: str | None, allowed_hosts: frozenset[str] | None = None
    ) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        path = str(scope.get("path", ""))
        if self.allowed_hosts is not None and host_name(scope) not in self.allowed_hosts:
            await _refuse(with_headers, 421, "this dashboard answers only its own host name")
            return
        if _is_public(path) or authorised(scope, self.token):
            await self.app(scope, receive, with_headers)
            return
        await _unauthorised(path, with_headers)


def _is_public(path: str) -> bool:
    return path in ("/login", "/logout") or path.startswith("/static/")


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _unauthorised(path: str, send: Send) -> None:
    if path.startswith("/api/") or path == "/events":
        body = json.dumps({"error": "a token is needed: Authorization: Bearer <token>"}).encode()
        kind = b"application/json"
    else:
        body = (
            b"<!doctype html><title>mlpred: sign in</title>"
            b"<p>This dashboard needs its token: open /login?token=&lt;token&gt;</p>"
        )
        kind = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="mlpred"'),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
