"""Finding protocols by name: the checkout's examples/protocols, $CELLBENCH_PROTOCOLS, a folder, a path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellbench.errors import DataError
from cellbench.protocols import PROTOCOLS_ENV, find_protocol, list_protocols

CHECKOUT = Path(__file__).parents[2] / "examples" / "protocols"


def test_the_checkout_holds_the_four_protocols(monkeypatch):
    monkeypatch.delenv(PROTOCOLS_ENV, raising=False)
    assert [p.name for p in list_protocols()] == ["cellseg1", "cellseg_18_methods", "glioma_c6", "neurips22_report"]
    p = find_protocol("glioma_c6")
    assert p.path == CHECKOUT / "glioma_c6.yaml" and p.published == CHECKOUT / "glioma_c6.published.yaml"


def test_a_folder_the_environment_or_a_path(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    assert find_protocol("mine", search=tmp_path).published is None
    monkeypatch.setenv(PROTOCOLS_ENV, str(tmp_path))
    assert find_protocol("mine").path == tmp_path / "mine.yaml"
    assert find_protocol("glioma_c6").path == CHECKOUT / "glioma_c6.yaml"  # the checkout is searched last
    assert find_protocol(str(tmp_path / "mine.yaml")).name == "mine"
    with pytest.raises(DataError, match="no such protocol file"):
        find_protocol(str(tmp_path / "other.yaml"))


def test_an_unknown_name_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv(PROTOCOLS_ENV, raising=False)
    with pytest.raises(DataError) as info:
        find_protocol("glioma", search=tmp_path)
    text = str(info.value)
    assert str(tmp_path) in text and "glioma_c6" in text and PROTOCOLS_ENV in text and "pip install -e" in text
