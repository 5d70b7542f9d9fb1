"""Archive bombs: a zip that unpacks past the cap is refused, counted while it unpacks, and leaves nothing."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

import cellbench.remote.archive as archive_module
from cellbench.errors import DataError
from cellbench.remote import DEFAULT_LIMITS, UnpackBudget, UnpackLimits, check_zip, parse_size, unpack_zip
from cellbench.remote.unpack_limits import format_size

CAP = UnpackLimits(max_bytes=1 << 20, max_entries=20)
BOMB = 5 << 20  # 5 MiB of zeros: a zip of about 5 KB


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _left(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_small_zip_that_unpacks_past_the_cap_is_refused_and_leaves_nothing(tmp_path):
    bomb = _zip(tmp_path / "bomb.zip", {"a.txt": b"fine", "zeros.bin": bytes(BOMB)})
    assert bomb.stat().st_size < 20_000
    with pytest.raises(DataError, match=r"more than the cap of 1 MiB \(at entry 'zeros.bin'\)") as err:
        unpack_zip(bomb, tmp_path / "out", limits=CAP)
    assert str(err.value).startswith(str(bomb)) and "--max-unpacked-size" in str(err.value)
    assert _left(tmp_path) == ["bomb.zip"]  # no output, no staged folder
    with pytest.raises(DataError, match="more than the cap"):
        check_zip(bomb, limits=CAP)
    # under a raised cap the same archive unpacks
    out = unpack_zip(bomb, tmp_path / "out", limits=UnpackLimits(max_bytes=BOMB + 4))
    assert (out / "zeros.bin").stat().st_size == BOMB


def test_too_many_entries_is_refused(tmp_path):
    many = _zip(tmp_path / "many.zip", {f"f{k:03d}.txt": b"" for k in range(50)})
    with pytest.raises(DataError, match=r"more than the cap of 20 entries \(at 'f020.txt'\)"):
        unpack_zip(many, tmp_path / "out", limits=CAP)
    assert _left(tmp_path) == ["many.zip"]
    with pytest.raises(DataError, match="entries"):
        check_zip(many, limits=CAP)


def test_bytes_written_are_counted_whatever_the_header_says(tmp_path, monkeypatch):
    """With the up-front check of the declared sizes blinded (a header that lies), the count of bytes written
    still stops the archive at the cap, after reading at most one byte past it."""
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(BOMB)})
    monkeypatch.setattr(archive_module, "_declared_size", lambda info: 0)
    with pytest.raises(DataError, match=r"^.*: unpacks to more than the cap of 1 MiB") as err:
        unpack_zip(bomb, tmp_path / "out", limits=CAP)
    assert "declares" not in str(err.value)
    assert _left(tmp_path) == ["bomb.zip"]


def _lie_about_sizes(path, size: int) -> None:
    """Rewrite the zip's local and central headers to declare ``size`` bytes unpacked."""
    raw = bytearray(path.read_bytes())
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, local + 22, size)
    struct.pack_into("<I", raw, central + 24, size)
    path.write_bytes(bytes(raw))


def test_a_zip_that_declares_1_kb_and_holds_5_mib_is_refused(tmp_path):
    liar = _zip(tmp_path / "liar.zip", {"zeros.bin": bytes(BOMB)})
    _lie_about_sizes(liar, 1000)
    assert zipfile.ZipFile(liar).infolist()[0].file_size == 1000
    with pytest.raises(DataError, match="corrupt archive"):  # no more than the declared 1000 bytes are written
        unpack_zip(liar, tmp_path / "out", limits=CAP)
    assert _left(tmp_path) == ["liar.zip"]


def test_the_budget_counts_a_stream_of_unknown_size():
    budget = UnpackBudget(UnpackLimits(max_bytes=10), "a.tar.gz")
    out = io.BytesIO()
    assert budget.copy(io.BytesIO(b"x" * 6), out, "a") == 6
    source = io.BytesIO(b"y" * 1_000_000)
    with pytest.raises(DataError, match=r"a.tar.gz: unpacks to more than the cap of 10 bytes \(at entry 'b'\)"):
        budget.copy(source, out, "b")
    assert source.tell() == 5 and out.getvalue() == b"x" * 6  # read one byte past the room left, wrote none


def test_sizes_and_limits():
    assert parse_size("1M") == 1 << 20 and parse_size("20 GiB") == 20 << 30 and parse_size("512k") == 512 << 10
    for bad in ("", "lots", "-1G", "0", "1 PB"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)
    assert format_size(DEFAULT_LIMITS.max_bytes) == "32 GiB"
    with pytest.raises(ValueError, match="max_entries"):
        UnpackLimits(max_entries=0)
