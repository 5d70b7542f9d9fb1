"""Who may talk to the GUI server, and how much they may upload: one ASGI middleware.

* **Token**: when the server listens on anything but the loopback address, every HTTP
  request and every websocket must carry the token, as ``?token=...`` (the URL that
  ``cellbench gui`` prints) or as the cookie that the first such request sets. Compared in
  constant time; a wrong or missing token gets 403 and nothing else.
* **Host header** (loopback without token): only ``127.0.0.1`` / ``localhost`` / ``[::1]``
  host names are answered, so a web page on another site cannot reach the server through
  DNS rebinding.
* **Origin header**: a request that names the page it comes from (browsers send ``Origin`` with
  every websocket, socket.io poll, upload and ``fetch``) is answered only when that page is the
  GUI's own: same host and port as the ``Host`` header, the loopback names ``127.0.0.1`` /
  ``localhost`` / ``[::1]`` counting as one host. Another site's page can neither open the GUI's
  socket nor read its answers (socket.io would otherwise allow any origin, with credentials).
* **Upload size**: a request body larger than ``max_upload_bytes`` is refused with 413
  (from its ``Content-Length``, and while streaming when the header is missing or lies).

:func:`redact_query_strings` keeps query strings (and so the token) out of the server's log.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

__all__ = ["COOKIE", "GuardMiddleware", "LOOPBACK", "QueryRedactor", "new_token", "redact_query_strings",
           "same_origin"]

COOKIE = "cellbench_token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def new_token() -> str:
    """A random token of 32 url-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def same_origin(origin: str, host: str | None, scheme: str = "http") -> bool:
    """Is ``origin`` (an ``Origin`` header) the server's own origin, the one the ``Host`` header ``host`` names?

    Same host name and port; the loopback names are aliases of one another. ``scheme`` (the request's)
    gives the port of a ``Host`` header without one.

    >>> same_origin("http://127.0.0.1:8765", "127.0.0.1:8765"), same_origin("http://localhost:8765", "127.0.0.1:8765")
    (True, True)
    >>> same_origin("http://evil.example", "127.0.0.1:8765"), same_origin("http://127.0.0.1:9000", "127.0.0.1:8765")
    (False, False)
    >>> same_origin("null", "127.0.0.1:8765")
    False
    """
    default = {"http": 80, "ws": 80, "https": 443, "wss": 443}
    if host is None:
        return False
    try:
        theirs, ours = urlsplit(origin.strip()), urlsplit("//" + host.strip())
        their_port, our_port = theirs.port or default.get(theirs.scheme), ours.port or default.get(scheme)
    except ValueError:  # a port that is no number
        return False
    if theirs.scheme not in ("http", "https") or not theirs.hostname or their_port != our_port:
        return False
    return theirs.hostname == ours.hostname or (theirs.hostname in LOOPBACK and ours.hostname in LOOPBACK)


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]


class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """ASGI middleware: token check on HTTP and websocket, host check on loopback, origin check, upload size limit.

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
        host = next(iter(_headers(scope, b"host")), None)
        if any(not same_origin(origin, host, scope.get("scheme", "http")) for origin in _headers(scope, b"origin")):
            return await _refuse(scope, receive, send, 403, b"cellbench gui: requests from other sites are refused")
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


_QUERY = re.compile(r"(?<=[\w/.%~-])\?[^\s\"'<>]+")


def _redact(value):
    return _QUERY.sub("", value) if isinstance(value, str) and "?" in value else value


class QueryRedactor(logging.Filter):
    """Drops the query strings (``?token=...``) from the URLs and paths of a log record.

    The message and each string argument are cleaned apart, so a formatter that reads the arguments
    (uvicorn's access log) still finds them.

    >>> record = logging.LogRecord("nicegui", logging.WARNING, "", 0, "%s not found", ("/x?token=s3",), None)
    >>> QueryRedactor().filter(record), record.getMessage()
    (True, '/x not found')
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact(v) for k, v in record.args.items()}
        return True


def redact_query_strings(loggers: tuple[str, ...] = ("nicegui", "uvicorn", "uvicorn.error", "uvicorn.access")) -> None:
    """Add a :class:`QueryRedactor` to the server's loggers (NiceGUI logs a missing page with its full URL)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryRedactor) for f in logger.filters):
            logger.addFilter(QueryRedactor())
