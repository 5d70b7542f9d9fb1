"""Security of the GUI: token on every request and websocket, host names, workspace confinement, uploads."""

from __future__ import annotations

import http.client
import io
import os
import socket
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from cellbench.errors import DataError
from cellbench.gui.security import COOKIE, GuardMiddleware
from cellbench.gui.uploads import save_upload
from cellbench.gui.workspace import Workspace


def _raw(url: str, path: str, *, headers: dict | None = None, method: str = "GET", body: bytes | None = None):
    """One request with ``path`` sent exactly as given (no normalisation of ``..`` or ``%2e``)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def _upgrade(url: str, cookie: str | None) -> str:
    """The status line the server answers a websocket upgrade of NiceGUI's socket with."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        lines = ["GET /_nicegui_ws/socket.io/?EIO=4&transport=websocket HTTP/1.1", f"Host: {parts.netloc}",
                 "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Version: 13"]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return s.recv(4096).decode("latin-1").split("\r\n")[0]


# --- the workspace ---------------------------------------------------------------------------

def test_workspace_refuses_paths_that_leave_it(tmp_path):
    (tmp_path / "ws" / "data").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path, tmp_path / "ws" / "escape")
    os.symlink(tmp_path / "ws" / "data", tmp_path / "ws" / "inside")
    ws = Workspace(tmp_path / "ws")
    assert ws.resolve("data") == (tmp_path / "ws" / "data").resolve()
    assert ws.resolve("inside") == ws.resolve("data")  # a link that stays inside is fine
    for bad in ("/etc/passwd", "../secret.txt", "data/../../secret.txt", "escape/secret.txt", "C:\\Windows",
                "\\\\host\\share", "~/x", "data/\x00x", "..\\secret.txt"):
        with pytest.raises(DataError):
            ws.resolve(bad)
    assert "escape" not in ws.dataset_candidates()


def test_uploads_are_limited_named_and_decoded(tmp_path):
    ws = Workspace(tmp_path)
    buf = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buf, format="PNG")
    png = buf.getvalue()
    saved = save_upload(ws, "set1", "images", "a.png", png, max_bytes=10_000)
    assert saved == tmp_path / "uploads" / "set1" / "images" / "a.png"
    with pytest.raises(DataError, match="over the limit"):
        save_upload(ws, "set1", "images", "b.png", png, max_bytes=10)
    with pytest.raises(DataError, match="does not decode"):
        save_upload(ws, "set1", "images", "c.png", b"\x89PNG not really", max_bytes=10_000)
    with pytest.raises(DataError, match="not an image file name"):
        save_upload(ws, "set1", "images", "d.exe", png, max_bytes=10_000)
    for name in ("../e.png", "x/e.png", "/tmp/e.png"):
        with pytest.raises(DataError):
            save_upload(ws, "set1", "images", name, png, max_bytes=10_000)
    with pytest.raises(DataError):
        save_upload(ws, "../up", "images", "f.png", png, max_bytes=10_000)
    assert sorted(p.name for p in (tmp_path / "uploads" / "set1" / "images").iterdir()) == ["a.png"]


# --- the middleware, in process ---------------------------------------------------------------

def _client(token, base_url="http://127.0.0.1"):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def echo(request):
        body = await request.body()
        return PlainTextResponse(f"ok {len(body)}")

    app = GuardMiddleware(Starlette(routes=[Route("/x", echo, methods=["GET", "POST"])]), token=token,
                          max_upload_bytes=1000)
    return TestClient(app, base_url=base_url)


def test_loopback_answers_only_loopback_host_names():
    assert _client(None).get("/x").status_code == 200
    assert _client(None, "http://localhost:8765").get("/x").status_code == 200
    assert _client(None, "http://evil.example").get("/x").status_code == 403  # DNS rebinding


def test_request_bodies_over_the_limit_are_refused():
    client = _client(None)
    assert client.post("/x", content=b"a" * 1000).text == "ok 1000"
    assert client.post("/x", content=b"a" * 1001).status_code == 413


# --- the real server, with a generated token ----------------------------------------------------

def test_non_loopback_server_generates_and_checks_a_token(token_server):
    url, token = token_server.url, token_server.token
    assert token and len(token) >= 32 and url.startswith("http://0.0.0.0:")
    local = url.replace("0.0.0.0", "127.0.0.1")
    assert _raw(local, "/data")[0] == 403
    assert _raw(local, "/data?token=wrong")[0] == 403
    assert _raw(local, "/data", headers={"Cookie": f"{COOKIE}=wrong"})[0] == 403
    assert _raw(local, "/_nicegui_ws/socket.io/?EIO=4&transport=polling")[0] == 403
    status, headers, _ = _raw(local, f"/data?token={token}")
    assert status == 200 and f"{COOKIE}={token}" in headers.get("set-cookie", "")
    assert _raw(local, "/data", headers={"Cookie": f"{COOKIE}={token}"})[0] == 200
    assert " 403 " in _upgrade(local, None)
    assert "101" in _upgrade(local, f"{COOKIE}={token}")


def test_server_serves_no_file_outside_the_workspace(token_server, tmp_path):
    local = token_server.url.replace("0.0.0.0", "127.0.0.1")
    cookie = {"Cookie": f"{COOKIE}={token_server.token}"}
    link = token_server.workspace / "outside-link"
    if not link.exists():
        os.symlink("/etc", link)
    status, _, body = _raw(local, "/files/dsb2018/images/nuclei.tif", headers=cookie)
    assert status == 200 and body == (token_server.workspace / "dsb2018/images/nuclei.tif").read_bytes()
    for attempt in ("/files/../../../../etc/passwd", "/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                    "/files/..%2f..%2f..%2fetc/passwd", "/files//etc/passwd", "/files/%2fetc%2fpasswd",
                    "/files/outside-link/passwd", "/files/dsb2018/../../../etc/passwd"):
        status, _, body = _raw(local, attempt, headers=cookie)
        assert status in (403, 404), attempt
        assert b"root:" not in body
    status, _, _ = _raw(local, "/files/x", headers={**cookie, "Content-Length": str(10**12)}, method="POST",
                        body=b"")
    assert status == 413


def test_a_dataset_naming_images_outside_the_workspace_is_refused(tmp_path):
    import json

    from cellbench.data import read_dataset

    (tmp_path / "ws" / "set").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "outside.png")
    coco = {"images": [{"id": 1, "file_name": "../../outside.png", "height": 8, "width": 8}],
            "annotations": [], "categories": [{"id": 1, "name": "cell"}]}
    (tmp_path / "ws" / "set" / "a.json").write_text(json.dumps(coco))
    ws = Workspace(tmp_path / "ws")
    dataset = read_dataset(ws.resolve("set/a.json"), "coco")
    with pytest.raises(DataError, match="outside the workspace"):
        ws.check_dataset(dataset)
