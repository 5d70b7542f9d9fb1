"""Who may talk to the GUI server, and how much they may upload: one ASGI middleware.

* **Token**: when the server listens on anything but the loopback address, every HTTP
  request and every websocket must carry the token, as ``?token=...`` (the URL that
  ``cellbench gui`` prints) or as the cookie that the first such request sets. Compared in
  constant time; a wrong or missing token gets 403 and nothing else.
* **Host header** (loopback without token): only ``127.0.0.1`` / ``localhost`` / ``[::1]``
  host names are answered, so a web page on another site cannot reach the server through
  DNS rebinding.
* **Upload size**: a request body larger than ``max_upload_bytes`` is refused with 413
  (from its ``Content-Length``, and while streaming when the header is missing or lies).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

__all__ = ["COOKIE", "GuardMiddleware", "LOOPBACK", "new_token"]

COOKIE = "cellbench_token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def new_token() -> str:
    """A random token of 32 url-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """ASGI middleware: token check on HTTP and websocket, host check on loopback, upload size limit.

    Args:
        app: the ASGI app it guards.
        token: required token, or None (loopback only).
        max_upload_bytes: largest request body accepted.
    """

    def __init__(self, app, *, token: str | None, max_upload_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_upload_bytes = max_upload_bytes

    def _given_token(self, scope: Scope) -> tuple[str | None, bool]:
        """(token the request carries, whether it came in the query string)."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0], True
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                cookie = SimpleCookie()
                try:
                    cookie.load(value.decode("latin-1"))
                except Exception:  # a malformed cookie header is no token
                    continue
                if COOKIE in cookie:
                    return cookie[COOKIE].value, False
        return None, False

    def _host_ok(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1").lower()
                host = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
                return host in LOOPBACK
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        from_query = False
        if self.token is not None:
            given, from_query = self._given_token(scope)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return await _refuse(scope, receive, send, 403, b"cellbench gui: missing or wrong token")
        elif not self._host_ok(scope):
            return await _refuse(scope, receive, send, 403, b"cellbench gui: unknown host name")
        if scope["type"] == "http":
            length = dict(scope.get("headers", ())).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_upload_bytes):
                return await _refuse(scope, receive, send, 413, b"cellbench gui: upload too large")
            receive = self._limited(receive)
            if from_query:
                send = self._with_cookie(send)
        try:
            await self.app(scope, receive, send)
        except _TooLarge:
            await _refuse(scope, receive, send, 413, b"cellbench gui: upload too large")

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_upload_bytes:
                raise _TooLarge()
            return message

        return counted

    def _with_cookie(self, send: Send) -> Send:
        cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        return sending


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, body: bytes) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
