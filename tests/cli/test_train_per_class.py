"""``cellbench train --per-class``: one model per class of the task, the models ``cellbench run`` trains."""

from __future__ import annotations

import json

import pytest

from cellbench.cli.main import main
from cellbench.data.synth import synth_glioma_c6
from cellbench.methods.model_dir import load_model

FAST = "sigmas: [1.0]\nthreshold_scales: [1.0]\ndistance_sigmas: [1.0]\nmin_distance_fractions: [0.25]\n"


@pytest.fixture(scope="module")
def glioma(tmp_path_factory):
    root = tmp_path_factory.mktemp("glioma")
    synth_glioma_c6(root, n_images=2, shape=(128, 160), cells_per_image=10, seed=1, overwrite=True)
    (root / "fast.yaml").write_text(FAST)
    return root


def _train(glioma, out, *extra: str) -> int:
    return main(["train", "watershed", "--data", str(glioma), "--layout", "glioma-c6", "--split", "train",
                 "--task", "types", "--config", str(glioma / "fast.yaml"), "--out", str(out), *extra])


def test_per_class_trains_one_model_per_class_on_its_instances(glioma, tmp_path, capsys):
    out = tmp_path / "models"
    assert _train(glioma, out, "--per-class", "--seed", "3") == 0
    index = json.loads((out / "classes.json").read_text())
    assert index["classes"] == ["cell_type_a", "cell_type_b"] and index["models"] == ["class0", "class1"]
    for k, name in enumerate(index["classes"]):
        model = load_model(out / f"class{k}")
        assert model.seed == 3
        assert model.train_summary["source"]["class"] == name
        assert set(model.train_summary["per_class"]) == {name}  # trained on that class's instances alone
    assert "one watershed model per class" in capsys.readouterr().out

    assert _train(glioma, out, "--per-class") == 2  # finished models are not replaced silently
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", str(out), "--images", str(tmp_path), "--out", str(tmp_path / "p")]) == 2
    assert "one model per class" in capsys.readouterr().err


def test_per_class_on_a_one_class_task_is_refused(glioma, tmp_path, capsys):
    code = main(["train", "watershed", "--data", str(glioma), "--layout", "glioma-c6", "--split", "train",
                 "--task", "cells", "--config", str(glioma / "fast.yaml"), "--out", str(tmp_path / "m"),
                 "--per-class"])
    assert code == 2 and "one class" in capsys.readouterr().err

