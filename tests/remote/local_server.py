"""A file server on 127.0.0.1 for download tests: Range requests, cut transfers, 404s and stalls.

``GET /<mode>/<name>`` serves ``root/<name>``:

* ``files``: as a static server does, honouring ``Range: bytes=N-`` (206) and saying ``Accept-Ranges: bytes``;
* ``plain``: always the whole file (200), no ``Accept-Ranges`` (a server that cannot resume);
* ``cut-once``: the first request for a name sends half of what it promised and drops the connection,
  later ones are served as ``files``;
* ``stall``: sends the headers and a few bytes, then nothing until the test ends (a timeout);
* ``mute``: accepts the connection and never answers;
* ``no-length``: the whole file with no ``Content-Length``, ended by closing the connection;
* ``no-length-cut``: half the file that way (a cut that looks like the end);
* ``chunked``: the whole file in chunks (``Transfer-Encoding: chunked``);
* ``chunked-cut``: the first half as a chunk, then the connection closes without the last chunk;
* ``redirect``: a 302 to ``/files/<name>``.

A name that is not in ``root`` is a 404. Every request is logged in ``requests`` as ``(path, Range header)``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        mode, _, name = self.path.lstrip("/").partition("/")
        path = srv.root / name
        if mode == "mute":
            srv.release.wait(10)
            return
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", f"/files/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not name or "/" in name or not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start = 0
        found = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if found and mode in ("files", "cut-once") and int(found.group(1)) < len(data):
            start = int(found.group(1))
        cut = mode == "cut-once" and name not in srv.cut_done
        if cut:
            srv.cut_done.add(name)
        body = data[start:]
        if mode in ("no-length", "no-length-cut", "chunked", "chunked-cut"):
            self._unframed(mode, body)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if mode != "plain":
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "stall":
            self.wfile.write(body[:10])
            self.wfile.flush()
            srv.release.wait(10)
            return
        self.wfile.write(body[: len(body) // 2] if cut else body)
        self.wfile.flush()
        if cut:
            self.close_connection = True


    def _unframed(self, mode: str, body: bytes) -> None:
        """The body without a Content-Length: ended by closing the connection, or chunked; ``-cut``: half of it."""
        half = body[: len(body) // 2]
        self.send_response(200)
        if mode.startswith("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if mode == "chunked":
            for k in range(0, len(body), 65536):
                block = body[k:k + 65536]
                self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif mode == "chunked-cut":
            self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")
        else:
            self.wfile.write(half if mode == "no-length-cut" else body)
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self.cut_done: set[str] = set()
        self.release = threading.Event()

    def url(self, mode: str = "files") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mode}"


@contextlib.contextmanager
def serve(root: str | Path) -> Iterator[_Server]:
    """Serve ``root`` on a free port of 127.0.0.1 for the ``with`` block."""
    server = _Server(Path(root))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
