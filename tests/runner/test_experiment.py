"""Experiment files: what loads, and the clear errors for what does not."""

from __future__ import annotations

import pytest
import yaml
from runner_helpers import experiment_dict

from cellbench.errors import DataError
from cellbench.runner import EvaluationSpec, experiment_from_dict, load_experiment


def _write(tmp_path, d):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False) if isinstance(d, dict) else d)
    return path


def test_loads_and_resolves_paths(tmp_path, tiny_data):
    d = experiment_dict(tiny_data)
    d["datasets"]["tiny"]["path"] = "data"  # relative to the file
    exp = load_experiment(_write(tmp_path, d))
    assert exp.name == "tiny"
    assert exp.datasets[0].path == str(tmp_path / "data")
    assert [m.name for m in exp.methods] == ["low", "high", "broken"]
    assert [(r.name, r.train_images, r.trains) for r in exp.regimes] == [
        ("zero-shot", 0, False), ("one", 1, True), ("all", None, True)]
    assert exp.evaluation.thresholds == (0.5, 0.7, 0.75, 0.9)
    assert exp.evaluation.ground_truth == ("overlap", "flattened")
    assert exp.source == str(tmp_path / "exp.yaml")


def test_fingerprint_ignores_the_file_location(tmp_path, tiny_data):
    d = experiment_dict(tiny_data)
    a = experiment_from_dict(d, source="a.yaml")
    b = experiment_from_dict(d, source="elsewhere/b.yaml")
    assert a.fingerprint == b.fingerprint
    d["evaluation"]["boundary_px"] = 2
    assert experiment_from_dict(d).fingerprint != a.fingerprint


def test_env_vars_and_data_override(tmp_path, tiny_data, monkeypatch):
    d = experiment_dict(tiny_data)
    d["datasets"]["tiny"]["path"] = "${CB_TEST_DATA:-/nowhere}/x"
    assert experiment_from_dict(d).datasets[0].path == "/nowhere/x"
    monkeypatch.setenv("CB_TEST_DATA", str(tmp_path))
    assert experiment_from_dict(d).datasets[0].path == str(tmp_path / "x")
    assert experiment_from_dict(d, data_paths={"tiny": "/elsewhere"}).datasets[0].path == "/elsewhere"
    with pytest.raises(DataError, match=r"--data: no dataset named \['other'\]"):
        experiment_from_dict(d, data_paths={"other": "/x"})


def test_default_evaluation():
    assert EvaluationSpec().ground_truth == ("overlap",)
    assert EvaluationSpec().boundary_px == 0


def test_metrics_are_read_and_change_the_fingerprint_only_when_given(tiny_data):
    d = experiment_dict(tiny_data)
    plain = experiment_from_dict(d)
    assert plain.evaluation.metrics == () and "metrics" not in plain.to_dict()["evaluation"]
    d["evaluation"]["metrics"] = ["matching", "aji", "bf"]
    chosen = experiment_from_dict(d)
    assert chosen.evaluation.metrics == ("matching", "aji", "bf") and chosen.fingerprint != plain.fingerprint


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("name"), r"name: must be a non-empty string"),
    (lambda d: d.update(extra=1), r"experiment: unknown key\(s\) \['extra'\]"),
    (lambda d: d["datasets"]["tiny"].update(layout="zarr"), r"datasets.tiny.layout: unknown layout 'zarr'"),
    (lambda d: d["datasets"]["tiny"].pop("path"), r"datasets.tiny.path: must be a non-empty string"),
    (lambda d: d["methods"]["low"].update(method="nope"), r"methods.low.method: unknown method 'nope'"),
    (lambda d: d["methods"]["low"].update(method="json:loads"), r"methods.low.method: 'json:loads' is not a cellbench Method"),
    (lambda d: d["methods"]["low"]["config"].update(treshold=3),
     r"methods.low.config: unknown ThresholdConfig field\(s\) \['treshold'\]"),
    (lambda d: d["methods"]["low"].update(regimes=["weekly"]), r"methods.low.regimes: unknown regime\(s\) \['weekly'\]"),
    (lambda d: d["regimes"]["one"].update(train_images=-1), r"regimes.one.train_images: must be an integer >= 0"),
    (lambda d: d["regimes"]["one"].update(train_images="some"), r"regimes.one.train_images: must be an integer"),
    (lambda d: d["evaluation"].update(thresholds=[0.5, 1.5]), r"evaluation.thresholds: IoU thresholds lie in \(0, 1\]"),
    (lambda d: d["evaluation"].update(ground_truth=["painted"]), r"evaluation.ground_truth: 'painted' is not one of"),
    (lambda d: d["evaluation"].update(flatten="random"), r"evaluation.flatten: 'random' is not one of"),
    (lambda d: d["evaluation"].update(coco="yes please"), r"evaluation.coco: must be true or false"),
    (lambda d: d["evaluation"].update(bounday_px=2), r"evaluation: unknown key\(s\) \['bounday_px'\]"),
    (lambda d: d["evaluation"].update(metrics=["aji", "hausdorff"]), r"evaluation.metrics: 'hausdorff' is not a metric"),
    (lambda d: d["evaluation"].update(metrics=["aji", "aji"]), r"evaluation.metrics: a metric is named twice"),
    (lambda d: d.update(methods={}), r"methods: is empty"),
    (lambda d: d.pop("regimes"), r"regimes: is missing"),
    (lambda d: d["datasets"]["tiny"].update(test=[{"split": "test", "tasks": ["soma"]}]),
     r"datasets.tiny.test\[0\].tasks: \['soma'\] are not among the dataset's tasks"),
    (lambda d: d["datasets"]["tiny"].update(path="${CB_SURELY_UNSET_VAR}/x"),
     r"datasets.tiny.path: environment variable CB_SURELY_UNSET_VAR"),
])
def test_bad_files_name_file_and_key(tmp_path, tiny_data, change, message):
    d = experiment_dict(tiny_data)
    change(d)
    path = _write(tmp_path, d)
    with pytest.raises(DataError, match=message) as info:
        load_experiment(path)
    assert str(info.value).startswith(str(path))


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(DataError, match="not valid YAML"):
        load_experiment(_write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(DataError, match="experiment: must be a mapping, got list"):
        load_experiment(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(DataError, match="cannot read experiment file"):
        load_experiment(tmp_path / "missing.yaml")
