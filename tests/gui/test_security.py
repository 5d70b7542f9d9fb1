"""Security of the GUI: token, host names and origins on every request and websocket, workspace confinement (every
file a dataset reads), uploads (size as sent and decoded, decoded off the event loop), logs without query strings."""

from __future__ import annotations

import http.client
import io
import os
import socket
from pathlib import Path
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


def _upgrade(url: str, cookie: str | None, *, origin: str | None = None) -> str:
    """The status line the server answers a websocket upgrade of NiceGUI's socket with."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        lines = ["GET /_nicegui_ws/socket.io/?EIO=4&transport=websocket HTTP/1.1", f"Host: {parts.netloc}",
                 "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Version: 13"]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        if origin:
            lines.append(f"Origin: {origin}")
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


# --- files a dataset reads: masks, annotation files, folders ---------------------------------------

def _dataset_with_outside_mask(tmp_path):
    """ws/ds/{images,masks}/a.png (layout dsb) whose mask is a link to a label image outside the workspace."""
    (tmp_path / "ws" / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ws" / "ds" / "masks").mkdir()
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "ws" / "ds" / "images" / "a.png")
    secret = np.zeros((8, 8), np.uint8)
    secret[2:5, 2:5] = 1
    Image.fromarray(secret).save(tmp_path / "secret-mask.png")
    os.symlink(tmp_path / "secret-mask.png", tmp_path / "ws" / "ds" / "masks" / "a.png")
    return Workspace(tmp_path / "ws")


def test_a_mask_linked_outside_the_workspace_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from cellbench.data import read_dataset
    from cellbench.data.layouts import label_folders

    ws = _dataset_with_outside_mask(tmp_path)
    dataset = read_dataset(ws.root / "ds", "dsb")
    assert len(dataset.samples[0].instances) == 1  # the layout reader follows the link
    with pytest.raises(DataError, match="labels path leads outside the workspace"):  # named by the dataset
        ws.check_dataset(dataset)
    opened = []
    monkeypatch.setattr(label_folders, "read_label_image", lambda path: opened.append(path))
    with pytest.raises(DataError, match="dataset file leads outside the workspace") as error:
        ws.read_dataset("ds", "dsb")  # what the Data page calls: refused before the mask is opened
    assert "masks/a.png" in str(error.value) and opened == []


def test_annotation_files_and_folders_linked_outside_are_refused(tmp_path):
    import json

    (tmp_path / "ws" / "set" / "images").mkdir(parents=True)
    (tmp_path / "outside" / "masks").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ws" / "set" / "images" / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}], "annotations": [],
            "categories": [{"id": 1, "name": "cell"}]}
    (tmp_path / "outside" / "a.json").write_text(json.dumps(coco))
    os.symlink(tmp_path / "outside" / "a.json", tmp_path / "ws" / "set" / "a.json")
    (tmp_path / "ws" / "ds" / "images").mkdir(parents=True)
    os.symlink(tmp_path / "outside" / "masks", tmp_path / "ws" / "ds" / "masks")
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(DataError, match="outside the workspace") as error:
        ws.read_dataset("set", "coco")  # the folder holding a linked COCO json
    assert "a.json" in str(error.value)
    with pytest.raises(DataError, match="dataset folder leads outside the workspace"):
        ws.read_dataset("ds", "dsb")
    (tmp_path / "ws" / "set" / "a.json").unlink()
    (tmp_path / "ws" / "set" / "a.json").write_text(json.dumps(coco))
    assert len(ws.read_dataset("set", "coco").samples) == 1  # the same data inside the workspace is read


def _coco_naming(tmp_path, file_name: str, *, json_at: str = "a.json"):
    """ws/<json_at>: a COCO json whose one 8 x 8 image is ``file_name``; tmp_path/outside.tif is 16 x 16 (outside
    the workspace, and of another size than the json says: reading its header would tell its size)."""
    import json

    import tifffile

    tifffile.imwrite(tmp_path / "outside.tif", np.zeros((16, 16), np.uint8))
    coco = {"images": [{"id": 1, "file_name": file_name, "height": 8, "width": 8}], "annotations": [],
            "categories": [{"id": 1, "name": "cell"}]}
    (tmp_path / "ws" / json_at).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "ws" / json_at).write_text(json.dumps(coco))
    return Workspace(tmp_path / "ws")


def _record_image_opens(monkeypatch) -> list:
    """Every image header or file the readers open, recorded (and then opened as before)."""
    import tifffile

    from cellbench.data import images
    from cellbench.data.layouts import coco

    opened = []
    shape, tiff, pillow = images.image_shape, tifffile.TiffFile, images.Image.open

    def recording(real):
        def record(path, *args, **kwargs):
            opened.append(str(path))
            return real(path, *args, **kwargs)
        return record

    monkeypatch.setattr(coco, "image_shape", recording(shape))
    monkeypatch.setattr(images.tifffile, "TiffFile", recording(tiff))
    monkeypatch.setattr(images.Image, "open", recording(pillow))
    return opened


@pytest.mark.parametrize("naming", ["absolute", "dotdot"])
def test_a_coco_json_naming_an_image_outside_is_refused_before_the_image_is_opened(tmp_path, monkeypatch, naming):
    file_name = str(tmp_path / "outside.tif") if naming == "absolute" else "../outside.tif"
    ws = _coco_naming(tmp_path, file_name)
    opened = _record_image_opens(monkeypatch)
    with pytest.raises(DataError, match="lies outside the allowed folder") as error:
        ws.read_dataset("a.json", "coco")
    assert "outside.tif" in str(error.value) and "a.json" in str(error.value)  # names the image and the json
    assert "16 x 16" not in str(error.value)  # the outside file's size stays unknown
    assert opened == []
    (tmp_path / "outside.tif").unlink()  # nor does the error tell whether the file outside exists
    with pytest.raises(DataError) as missing:
        ws.read_dataset("a.json", "coco")
    assert str(missing.value) == str(error.value)


def test_images_folders_the_coco_reader_looks_in_outside_the_workspace_are_not_looked_in(tmp_path, monkeypatch):
    ws = _coco_naming(tmp_path, "outside.tif")
    (tmp_path / "images").mkdir()  # the images/ folder beside the json's folder, which is the workspace
    (tmp_path / "outside.tif").rename(tmp_path / "images" / "outside.tif")
    opened = _record_image_opens(monkeypatch)
    with pytest.raises(DataError, match="not found beside the json"):
        ws.read_dataset("a.json", "coco")
    assert opened == []
    (ws.root / "images").mkdir()  # an images/ folder inside, holding a link out: refused before it is opened
    os.symlink(tmp_path / "images" / "outside.tif", ws.root / "images" / "outside.tif")
    with pytest.raises(DataError, match="lies outside the allowed folder") as error:
        ws.read_dataset("a.json", "coco")
    assert "images/outside.tif" in str(error.value) and opened == []


def test_a_folder_option_or_split_leading_out_of_the_workspace_is_refused_before_it_is_listed(tmp_path, monkeypatch):
    ws = _dataset_with_outside_mask(tmp_path)
    os.unlink(ws.root / "ds" / "masks" / "a.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(ws.root / "ds" / "masks" / "a.png")
    (tmp_path / "outside-masks").mkdir()
    listed = []
    real_iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: listed.append(str(self)) or real_iterdir(self))
    for options in ({"masks": "../../outside-masks"}, {"masks": str(tmp_path / "outside-masks")},
                    {"split": "../.."}):
        listed.clear()
        with pytest.raises(DataError, match="lies outside the allowed folder"):
            ws.read_dataset("ds", "folder", **options)
        assert not any("outside-masks" in p or p == str(tmp_path) for p in listed), options
    assert len(ws.read_dataset("ds", "folder", masks="masks").samples) == 1


def test_read_dataset_without_confine_to_reads_images_outside_as_before(tmp_path):
    from cellbench.data import read_dataset

    for file_name in (str(tmp_path / "outside.tif"), "../outside.tif"):
        ws = _coco_naming(tmp_path, file_name)
        with pytest.raises(DataError, match="image is 16 x 16"):  # the CLI reads what the json names
            read_dataset(ws.root / "a.json", "coco")
        import tifffile

        tifffile.imwrite(tmp_path / "outside.tif", np.zeros((8, 8), np.uint8))
        dataset = read_dataset(ws.root / "a.json", "coco")
        assert dataset.samples[0].image_path.resolve() == (tmp_path / "outside.tif").resolve()


# --- uploads: decoded size, decoding off the event loop -------------------------------------------------

def _tiff_claiming(path, shape, dtype):
    """A small TIFF whose header claims ``shape`` pixels of ``dtype`` (its pixel data is the 16 x 16 it holds)."""
    import tifffile

    tifffile.imwrite(path, np.zeros((16, 16), dtype), metadata=None)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for tag, value in (("ImageLength", shape[0]), ("ImageWidth", shape[1]), ("RowsPerStrip", shape[0])):
            tif.pages[0].tags[tag].overwrite(value)
    return path.read_bytes()


def test_uploads_that_decode_too_large_are_refused_before_decoding(tmp_path, monkeypatch):
    import tifffile

    from cellbench.gui import uploads

    data = _tiff_claiming(tmp_path / "claim.tif", (12_288, 12_288), np.float64)  # 1.2 GB of pixels, 2 KB of file
    assert len(data) < 10_000 and tifffile.TiffFile(io.BytesIO(data)).series[0].shape == (12_288, 12_288)
    ws = Workspace(tmp_path)
    monkeypatch.setattr(uploads, "read_image", lambda path: pytest.fail("decoded an image over the limit"))
    with pytest.raises(DataError, match="more than the GUI's limit of 268,435,456 bytes") as error:
        save_upload(ws, "big", "images", "huge.tif", data, max_bytes=10**6)
    assert "huge.tif" in str(error.value) and "12288 x 12288 float64" in str(error.value)
    monkeypatch.undo()
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint16)).save(buf, format="PNG")  # 8,192 bytes of pixels
    with pytest.raises(DataError, match="more than the GUI's limit of 8,000 bytes"):
        save_upload(ws, "big", "masks", "m.png", buf.getvalue(), max_bytes=10**6, max_decoded_bytes=8_000)
    assert save_upload(ws, "big", "masks", "m.png", buf.getvalue(), max_bytes=10**6, max_decoded_bytes=8_192).is_file()
    assert sorted(p.name for p in (tmp_path / "uploads" / "big").rglob("*") if p.is_file()) == ["m.png"]


def test_uploads_decode_in_a_worker_thread(tmp_path, monkeypatch):
    import asyncio
    import threading

    from cellbench.gui import uploads

    decoded_in = []
    real = uploads.read_image

    def recording(path):
        decoded_in.append(threading.current_thread())
        return real(path)

    monkeypatch.setattr(uploads, "read_image", recording)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="PNG")

    async def upload():  # as the Data page's upload handler does
        saved = await uploads.store_upload(Workspace(tmp_path), "s", "images", "a.png", buf.getvalue(),
                                           max_bytes=10_000)
        return saved, threading.current_thread()

    result = {}  # the loop runs in a thread of its own: Playwright's sync API may hold one in this thread
    runner = threading.Thread(target=lambda: result.update(out=asyncio.run(upload())))
    runner.start()
    runner.join(60)
    saved, loop_thread = result["out"]
    assert saved.is_file() and len(decoded_in) == 1 and decoded_in[0] is not loop_thread


# --- origins and logs, on the real server ---------------------------------------------------------------

def test_other_sites_can_neither_poll_nor_open_the_socket(token_server):
    local = token_server.url.replace("0.0.0.0", "127.0.0.1")
    port = urlsplit(local).port
    cookie = f"{COOKIE}={token_server.token}"
    handshake = "/_nicegui_ws/socket.io/?EIO=4&transport=polling"
    for foreign in ("http://evil.example", f"http://evil.example:{port}", "http://127.0.0.1:1", "null"):
        status, headers, body = _raw(local, handshake, headers={"Cookie": cookie, "Origin": foreign})
        assert status == 403 and b"other sites" in body, foreign
        assert not any(k.lower().startswith("access-control") for k in headers), headers
        assert " 403 " in _upgrade(local, cookie, origin=foreign), foreign
    for own in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):  # loopback names: one host
        status, headers, body = _raw(local, handshake, headers={"Cookie": cookie, "Origin": own})
        assert status == 200 and body.startswith(b"0{") and headers.get("access-control-allow-origin") == own
        assert "101" in _upgrade(local, cookie, origin=own)


def test_missing_pages_are_logged_without_their_query_string(token_server):
    import time

    local = token_server.url.replace("0.0.0.0", "127.0.0.1")
    before = len(token_server.lines)
    status, _, _ = _raw(local, f"/no-such-page?token={token_server.token}&note=logged-query")
    assert status == 404
    end = time.monotonic() + 20
    while not any("no-such-page" in line for line in token_server.lines[before:]) and time.monotonic() < end:
        time.sleep(0.1)
    logged = "".join(token_server.lines[before:])
    assert "no-such-page" in logged  # the 404 is logged ...
    assert token_server.token not in logged and "logged-query" not in logged  # ... without its query string
