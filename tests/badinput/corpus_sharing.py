"""Bad inputs of the commands that share and fetch: ``gallery publish | pull``, ``export bioimageio``,
``models add``, ``data download | info`` of registered datasets and ``analyze rank | regress``.

The cases follow :mod:`.corpus`: each writes one bad thing under the corpus
folder and says which file a good message names. The commands that read a
cache (``pull``, ``models add``, ``data download``, ``data info NAME``) get
``root/cache`` ($CELLBENCH_CACHE, or ``--cache``), so that "writes nothing"
covers the cache too: a refused download leaves no folder, part file or
trust-on-first-use record behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from .corpus import MODEL_CASES, Bad, Case, truncated, write_json

GALLERY_MODEL = "ws"

# ---------------------------------------------------------------- run folders that are not runs


def _run(build: Callable[[Path], Path], problem: str) -> Callable[[Path], Bad]:
    def wrapped(root: Path) -> Bad:
        (root / "run").mkdir()
        return Bad(build(root / "run"), problem, also=(root / "run",))

    return wrapped


def _db_bytes(data: bytes) -> Callable[[Path], Path]:
    def build(run: Path) -> Path:
        (run / "results.sqlite").write_bytes(data)
        return run / "results.sqlite"

    return build


def _other_sqlite(run: Path) -> Path:
    path = run / "results.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    db.close()
    return path


def _model_as_run(run: Path) -> Path:
    (run / "model.json").write_text(json.dumps({"method": "watershed", "weights": {}}))
    return run


RUN_CASES = [
    Case("run-empty-folder", "run", _run(lambda run: run, "results.sqlite|not a cellbench run|no results")),
    Case("run-a-model-folder", "run", _run(_model_as_run, "results.sqlite|not a cellbench run|no results")),
    Case("run-db-zero-byte", "run", _run(_db_bytes(b""), "not a cellbench results database|no run|empty")),
    Case("run-db-not-sqlite", "run", _run(_db_bytes(b"SQLite format 2\0 not really\n" * 20),
                                          "not a (cellbench results|SQLite) database|corrupt")),
    Case("run-db-other-sqlite", "run", _run(_other_sqlite, "not a cellbench results database")),
]

# ---------------------------------------------------------------- gallery folders: gallery/ holds model "ws"


def publish_good(root: Path) -> tuple[Path, dict]:
    """Publish the corpus model as ``ws`` into ``root/gallery``; the index path and the model's entry."""
    from cellbench.gallery import publish

    publish(root / "model", root / "gallery", name=GALLERY_MODEL)
    index = root / "gallery" / "index.json"
    return index, json.loads(index.read_text())["models"][0]


def _index_bytes(data: bytes, problem: str) -> Callable[[Path], Bad]:
    def build(root: Path) -> Bad:
        index, _ = publish_good(root)
        index.write_bytes(data)
        return Bad(index, problem)

    return build


def _index_edit(edit: Callable[[dict], object], problem: str) -> Callable[[Path], Bad]:
    def build(root: Path) -> Bad:
        index, _ = publish_good(root)
        data = json.loads(index.read_text())
        replaced = edit(data)
        write_json(index, data if replaced is None else replaced)
        return Bad(index, problem)

    return build


def _archive_of(root: Path, entry: dict) -> Path:
    return root / "gallery" / entry["archive"]["path"]


def _archive_bytes(make: Callable[[bytes], bytes], problem: str, *, reindex: bool) -> Callable[[Path], Bad]:
    """The published archive replaced by ``make(old bytes)``; with ``reindex`` the index's sha256 and size
    follow it (a gallery whose publisher packed a bad archive), else the index still names the old one."""

    def build(root: Path) -> Bad:
        index, entry = publish_good(root)
        archive = _archive_of(root, entry)
        data = make(archive.read_bytes())
        archive.write_bytes(data)
        if reindex:
            record = json.loads(index.read_text())
            record["models"][0]["archive"].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
            write_json(index, record)
        return Bad(archive, problem)

    return build


def _flipped(data: bytes) -> bytes:
    return data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:]


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A gzipped tar of regular files, names as given (``../`` included)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return raw.getvalue()


def _missing_archive(root: Path) -> Bad:
    _, entry = publish_good(root)
    archive = _archive_of(root, entry)
    archive.unlink()
    return Bad(archive, "missing")


def _entry_set(key: str, value) -> Callable[[dict], None]:
    def edit(index: dict) -> None:
        index["models"][0][key] = value

    return edit


def _archive_set(key: str, value) -> Callable[[dict], None]:
    def edit(index: dict) -> None:
        index["models"][0]["archive"][key] = value

    return edit


GALLERY_CASES = [
    Case("gallery-index-not-json", "gallery", _index_bytes(b'{"format": "cellbench-gallery", "models": [',
                                                           "not JSON")),
    Case("gallery-index-zero-byte", "gallery", _index_bytes(b"", "not JSON")),
    Case("gallery-index-a-list", "gallery", _index_edit(lambda d: [d], "not a cellbench gallery index")),
    Case("gallery-index-version-text", "gallery",
         _index_edit(lambda d: d.update(format_version="one"), "format_version must be a whole number")),
    Case("gallery-models-not-a-list", "gallery", _index_edit(lambda d: d.update(models={"ws": {}}), "'models'")),
    Case("gallery-entry-a-string", "gallery", _index_edit(lambda d: d.update(models=["ws"]), "'models'|entr")),
    Case("gallery-entry-name-a-number", "gallery", _index_edit(_entry_set("name", 7), "name")),
    Case("gallery-entry-method-a-list", "gallery", _index_edit(_entry_set("method", ["watershed"]), "method")),
    Case("gallery-archive-a-string", "gallery", _index_edit(_entry_set("archive", "model.tar.gz"), "archive")),
    Case("gallery-archive-sha256-a-number", "gallery", _index_edit(_archive_set("sha256", 12), "sha256")),
    Case("gallery-archive-sha256-not-hex", "gallery", _index_edit(_archive_set("sha256", "z" * 64), "sha256"),
         ("pull",)),
    Case("gallery-archive-size-text", "gallery", _index_edit(_archive_set("size", "big"), "size")),
    Case("gallery-archive-size-negative", "gallery", _index_edit(_archive_set("size", -1), "size"), ("pull",)),
    Case("gallery-archive-sha256-mismatch", "gallery",
         _archive_bytes(_flipped, "checksum mismatch", reindex=False), ("pull",)),
    Case("gallery-archive-truncated", "gallery",
         _archive_bytes(truncated, "size mismatch", reindex=False), ("pull",)),
    Case("gallery-archive-missing", "gallery", _missing_archive, ("pull",)),
    Case("gallery-archive-not-gzip", "gallery",
         _archive_bytes(lambda _: b"not a tar.gz\n", "not a readable model archive", reindex=True), ("pull",)),
    Case("gallery-archive-truncated-reindexed", "gallery",
         _archive_bytes(truncated, "corrupt|not a readable", reindex=True), ("pull",)),
    Case("gallery-archive-dotdot-member", "gallery",
         _archive_bytes(lambda _: tar_gz({"model/../../evil.txt": b"x"}), "outside", reindex=True), ("pull",)),
]

# ---------------------------------------------------------------- export: a good model of another method


def _not_cellpose(root: Path) -> Bad:
    return Bad(root / "model", "cellpose")


EXPORT_CASES = [Case("model-not-cellpose", "model", _not_cellpose, ("export",))]

# ---------------------------------------------------------------- files added by hand: weights and datasets


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def _given(name: str, data: Callable[[], bytes], problem: str) -> Callable[[Path], Bad]:
    """``root/given/<name>`` holding ``data()``: the file the command is given."""

    def build(root: Path) -> Bad:
        path = root / "given" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data())
        return Bad(path, problem)

    return build


def _cellpose_pair(bad: bytes, problem: str) -> Callable[[Path], Bad]:
    """The Cellpose dataset (no checksum published) by hand: a good ``train.zip`` and a bad ``test.zip``."""

    def build(root: Path) -> Bad:
        (root / "given").mkdir(exist_ok=True)
        (root / "given" / "train.zip").write_bytes(zip_bytes({"train/000_img.png": b"pixels"}))
        return _given("test.zip", lambda: bad, problem)(root)

    return build


_GOOD_ZIP = zip_bytes({"dsb2018/test/images/a.tif": b"pixels"})

WEIGHT_CASES = [  # `models add`: stardist/2D_versatile_fluo publishes a sha256, cellpose/cyto3 no checksum
    Case("weights-zero-byte", "weights", _given("python_2D_versatile_fluo.zip", lambda: b"", "empty file, 0 bytes"),
         ("add-stardist",)),
    Case("weights-wrong-file", "weights", _given("python_2D_versatile_fluo.zip", lambda: _GOOD_ZIP,
                                                 "checksum mismatch"), ("add-stardist",)),
    Case("weights-zero-byte-unpublished", "weights", _given("cyto3", lambda: b"", "empty"), ("add-cellpose",)),
]

ARCHIVE_CASES = [  # `data download --archive`: dsb2018 publishes a sha256, cellpose (by hand) none
    Case("archive-zero-byte", "archive", _given("dsb2018.zip", lambda: b"", "not a zip"), ("download-dsb2018",)),
    Case("archive-truncated", "archive", _given("dsb2018.zip", lambda: truncated(_GOOD_ZIP), "not a zip|corrupt"),
         ("download-dsb2018",)),
    Case("archive-not-a-zip", "archive", _given("dsb2018.zip", lambda: b"these are not files\n" * 40, "not a zip"),
         ("download-dsb2018",)),
    Case("archive-wrong-zip", "archive", _given("dsb2018.zip", lambda: _GOOD_ZIP, "checksum mismatch"),
         ("download-dsb2018",)),
    Case("archive-dotdot-member", "archive",
         _given("dsb2018.zip", lambda: zip_bytes({"../evil.txt": b"x"}), "unsafe path"), ("download-dsb2018",)),
    Case("archive-zero-byte-unpublished", "archive", _cellpose_pair(b"", "not a zip"), ("download-cellpose",)),
    Case("archive-dotdot-member-unpublished", "archive",
         _cellpose_pair(zip_bytes({"test/../../evil.txt": b"x"}), "unsafe path"), ("download-cellpose",)),
    Case("archive-absolute-member-unpublished", "archive",
         _cellpose_pair(zip_bytes({"/tmp/evil.txt": b"x"}), "unsafe path"), ("download-cellpose",)),
]


def _not_downloaded(root: Path) -> Bad:
    return Bad(root / "cache" / "dsb2018" / "data", "not downloaded")


def _half_downloaded(root: Path) -> Bad:
    data = root / "cache" / "dsb2018" / "data"
    (data / "dsb2018" / "test" / "images").mkdir(parents=True)  # unpacked, never marked complete
    return Bad(data, "did not finish downloading")


REGISTERED_CASES = [
    Case("registered-not-downloaded", "registered", _not_downloaded, ("info-registered",)),
    Case("registered-download-unfinished", "registered", _half_downloaded, ("info-registered",)),
]

CASES = RUN_CASES + GALLERY_CASES + EXPORT_CASES + WEIGHT_CASES + ARCHIVE_CASES + REGISTERED_CASES

COMMANDS = {
    "model": ("publish", "export"),
    "run": ("publish-run", "rank", "regress"),
    "gallery": ("pull", "list"),
}

#: Every model-directory case of :mod:`.corpus` also goes through these commands.
MODEL_PARAMS = [(case, command) for case in MODEL_CASES for command in COMMANDS["model"]]


def argv(command: str, root: Path, out: str = "out") -> list[str]:
    """The command line of ``command`` (one of this module's) on the corpus under ``root``, writing to ``root/out``."""
    model, out, cache = str(root / "model"), str(root / out), str(root / "cache")
    given = root / "given"
    if command == "publish":
        return ["gallery", "publish", model, "--gallery", out, "--name", GALLERY_MODEL]
    if command == "publish-run":
        return ["gallery", "publish", model, "--gallery", out, "--name", GALLERY_MODEL, "--run", str(root / "run")]
    if command == "export":
        return ["export", "bioimageio", model, "--out", str(Path(out) / "model.zip")]
    if command in ("rank", "regress"):
        return ["analyze", command, str(root / "run"), "--out", out]
    if command == "pull":
        return ["gallery", "pull", GALLERY_MODEL, "--gallery", str(root / "gallery")]
    if command == "list":
        return ["gallery", "list", "--gallery", str(root / "gallery")]
    if command == "add-stardist":
        return ["models", "add", "stardist/2D_versatile_fluo", "--file", str(given / "python_2D_versatile_fluo.zip"),
                "--cache", cache]
    if command == "add-cellpose":
        return ["models", "add", "cellpose/cyto3", "--file", str(given / "cyto3"), "--cache", cache]
    if command == "download-dsb2018":
        return ["data", "download", "dsb2018", "--archive", str(given / "dsb2018.zip"), "--cache", cache]
    if command == "download-cellpose":
        return ["data", "download", "cellpose", "--archive", str(given / "train.zip"), "--archive",
                str(given / "test.zip"), "--cache", cache]
    if command == "info-registered":
        return ["data", "info", "dsb2018", "--split", "test"]
    raise ValueError(command)


#: The commands :func:`argv` builds.
ARGV_COMMANDS = frozenset({"publish", "publish-run", "export", "rank", "regress", "pull", "list", "add-stardist",
                           "add-cellpose", "download-dsb2018", "download-cellpose", "info-registered"})
