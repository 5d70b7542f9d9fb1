"""A registry of the real entries' names, URLs and file names, with small fake files (and checksums to match)
served from a mirror folder, so every entry can be pulled without the network."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

from cellbench.pretrained import entries
from cellbench.remote import RemoteFile


def fake_content(entry, remote: RemoteFile) -> bytes:
    """Bytes standing in for one file: a zip holding a StarDist-like folder, else a few KB naming the file."""
    if entry.unpack:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("config.json", json.dumps({"n_rays": 32, "fake_of": entry.name}))
            zf.writestr("thresholds.json", json.dumps({"prob": 0.5, "nms": 0.4}))
            zf.writestr("weights_best.h5", b"\x89HDF" + remote.file_name.encode() * 50)
        return buf.getvalue()
    return (f"fake {entry.name} {remote.file_name}\n" * 200).encode()


def _faked(entry, remote: RemoteFile, data: bytes) -> RemoteFile:
    sha = hashlib.sha256(data).hexdigest()
    changes = {"size": len(data) if remote.size is not None else None,
               "md5": hashlib.md5(data).hexdigest() if remote.md5 else None,
               "sha256": sha if remote.sha256 else None,
               "sha256_prefix": sha[: len(remote.sha256_prefix)] if remote.sha256_prefix else None}
    return dataclasses.replace(remote, **changes)


def install_fake_registry(monkeypatch, mirror: Path) -> dict[str, dict[str, bytes]]:
    """Replace the registry's checksums by those of fake files written to ``mirror``; returns the files' bytes.

    Entries keep their names, URLs, file names and which checksums they publish; bundled copies are dropped
    so that everything comes from the mirror.
    """
    mirror.mkdir(parents=True, exist_ok=True)
    contents: dict[str, dict[str, bytes]] = {}
    faked = []
    for entry in entries.REGISTRY:
        files = []
        for remote in entry.files:
            data = fake_content(entry, remote)
            (mirror / remote.file_name).write_bytes(data)
            contents.setdefault(entry.name, {})[remote.file_name] = data
            files.append(_faked(entry, remote, data))
        faked.append(dataclasses.replace(entry, files=tuple(files), bundled=()))
    monkeypatch.setattr(entries, "REGISTRY", tuple(faked))
    return contents


def replace_file(monkeypatch, mirror: Path, name: str, file_name: str, data: bytes) -> None:
    """Put ``data`` in the mirror as entry ``name``'s ``file_name``, with the entry's checksums set to match."""
    (mirror / file_name).write_bytes(data)
    swapped = []
    for entry in entries.REGISTRY:
        if entry.name == name:
            files = tuple(_faked(entry, f, data) if f.file_name == file_name else f for f in entry.files)
            entry = dataclasses.replace(entry, files=files)
        swapped.append(entry)
    monkeypatch.setattr(entries, "REGISTRY", tuple(swapped))
