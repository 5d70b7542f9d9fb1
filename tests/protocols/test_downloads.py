"""What a protocol needs fetched: its registered datasets and the registry weights its methods start from."""

from __future__ import annotations

import pytest

from cellbench.errors import DataError
from cellbench.protocols import Requirements, fetch_requirements, protocol_requirements
from cellbench.runner.experiment import DatasetSpec, Experiment, MethodSpec, Regime


def test_datasets_by_name_and_weights_by_registry_name(tmp_path):
    exp = Experiment(
        name="x",
        datasets=(DatasetSpec("a", "dsb", "dsb2018", registered="dsb2018"),
                  DatasetSpec("b", "dsb", "dsb2018", registered="dsb2018"),
                  DatasetSpec("c", "dsb", str(tmp_path))),
        methods=(MethodSpec("cp", "cellpose", config={"pretrained": "cyto3"}),
                 MethodSpec("cp2", "cellpose", config={"pretrained": "cellpose/cyto3"},
                            per_dataset={"a": {"pretrained": "nuclei"}}),
                 MethodSpec("own", "cellpose", config={"pretrained": str(tmp_path / "my_model")}),
                 MethodSpec("seg", "cellseg1", config={"checkpoint": "vit_b", "backbone": "vit_b"}),
                 MethodSpec("ws", "watershed")),
        regimes=(Regime("all"),))
    req = protocol_requirements(exp)
    assert req.datasets == ("dsb2018",)
    assert req.weights == (("cp", "cellpose/cyto3"), ("cp2", "cellpose/cyto3"), ("cp2", "cellpose/nuclei"),
                           ("seg", "sam/vit_b"))


def test_every_missing_dataset_is_listed_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError) as info:
        fetch_requirements(Requirements(datasets=("tissuenet", "cellpose"), weights=()), progress=False)
    text = str(info.value)
    assert "nothing was run" in text and "dataset tissuenet:" in text and "dataset cellpose:" in text
