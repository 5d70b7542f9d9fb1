"""confine / is_inside: a path, its links followed, inside a folder or refused by name."""

import os

import pytest

from cellbench.data.confine import confine, is_inside
from cellbench.errors import DataError


def test_links_are_followed_and_dotdot_resolved(tmp_path):
    (tmp_path / "ws" / "set").mkdir(parents=True)
    (tmp_path / "secret.tif").write_bytes(b"")
    os.symlink(tmp_path / "secret.tif", tmp_path / "ws" / "set" / "out.tif")
    os.symlink(tmp_path / "ws" / "set", tmp_path / "ws" / "alias")
    ws = tmp_path / "ws"
    assert is_inside(ws / "alias" / "x.tif", ws) and is_inside(ws, ws) and is_inside(ws / "set" / ".." / "a", ws)
    assert not is_inside(ws / "set" / "out.tif", ws)
    assert not is_inside(ws / "set" / ".." / ".." / "secret.tif", ws)
    assert not is_inside(tmp_path / "wsx", ws)  # a sibling whose name starts alike is not inside


def test_the_error_names_the_path_as_given_and_what_it_is(tmp_path):
    (tmp_path / "ws").mkdir()
    os.symlink(tmp_path, tmp_path / "ws" / "up")
    with pytest.raises(DataError, match="label file lies outside the allowed folder") as error:
        confine(tmp_path / "ws" / "up" / "a.tif", tmp_path / "ws", "label file")
    assert error.value.path == str(tmp_path / "ws" / "up" / "a.tif")


def test_the_path_comes_back_as_given(tmp_path):
    os.symlink(tmp_path, tmp_path / "here")
    assert confine(tmp_path / "here" / "a.tif", tmp_path) == tmp_path / "here" / "a.tif"
    assert confine("a/../b.tif", None) == type(tmp_path)("a/../b.tif")


def test_a_nul_byte_is_refused_by_name(tmp_path):
    assert not is_inside(tmp_path / "a\x00.tif", tmp_path)
    with pytest.raises(DataError, match="the image's path holds a NUL byte"):
        confine(tmp_path / "a\x00.tif", tmp_path, "image")
