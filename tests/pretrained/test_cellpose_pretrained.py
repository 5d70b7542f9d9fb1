"""`pretrained: NAME` in the Cellpose method: zero-shot and fine-tuning from registry weights (served from a
mirror folder: randomly initialised Cellpose 3 networks saved under the real file names, and size models)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cellbench.errors import DataError

pytest.importorskip("cellpose")
torch = pytest.importorskip("torch")

from cellbench.methods.adapters.cellpose import CellposeConfig, CellposeMethod, read_size_model  # noqa: E402
from cellbench.pretrained import models_dir  # noqa: E402
from cellbench.remote import TRUST_FILE  # noqa: E402


def _network_file(path: Path, *, seed: int, keep_diameters: bool = True) -> None:
    from cellpose import models

    torch.manual_seed(seed)
    model = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=30.0, mkldnn=False)
    state = model.net.state_dict()
    if not keep_diameters:  # as in Cellpose's older built-in files
        state = {k: v for k, v in state.items() if k not in ("diam_mean", "diam_labels")}
    torch.save(state, path)


def _size_file(path: Path, *, diam_mean: float) -> None:
    rng = np.random.default_rng(0)
    np.save(path, {"A": rng.normal(0, 0.002, 256), "smean": rng.normal(0, 0.1, 256), "diam_mean": diam_mean,
                   "ymean": 0.1})


@pytest.fixture
def mirror(fake_mirror, monkeypatch):
    folder, _ = fake_mirror
    _network_file(folder / "cyto3", seed=1)
    _size_file(folder / "size_cyto3.npy", diam_mean=30.0)
    _network_file(folder / "nucleitorch_0", seed=2, keep_diameters=False)
    _size_file(folder / "size_nucleitorch_0.npy", diam_mean=17.0)
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", str(folder))
    return folder


def _image() -> np.ndarray:
    yy, xx = np.mgrid[:96, :96]
    disks = ((yy - 30) ** 2 + (xx - 30) ** 2 < 100) | ((yy - 65) ** 2 + (xx - 60) ** 2 < 144)
    return (40 + 150 * disks + np.random.default_rng(0).normal(0, 5, disks.shape)).clip(0, 255).astype(np.uint8)


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")  # Cellpose's own
def test_zero_shot_uses_the_registry_weights_and_size_model(mirror):
    from cellpose.models import SizeModel

    method = CellposeMethod(CellposeConfig(pretrained="cyto3"))
    model = method._require_model()  # what predict() loads first when untrained
    saved = torch.load(mirror / "cyto3", weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.net.state_dict().items())
    # predict() without a diameter uses the one Cellpose's own SizeModel estimates from the same files
    x = _image().astype(np.float32)
    reference = SizeModel(cp_model=model, pretrained_size=str(mirror / "size_cyto3.npy"))
    expected, _ = reference.eval(x, channels=[0, 0], normalize=True)
    assert method._estimated_diameter(x) == pytest.approx(float(expected))
    recorded = (models_dir() / TRUST_FILE).read_text()
    assert "https://www.cellpose.org/models/cyto3" in recorded and "size_cyto3.npy" in recorded


def test_nuclei_weights_without_diameters_load_at_17_px(mirror):
    method = CellposeMethod(CellposeConfig(pretrained="cellpose/nuclei", diameter=17.0))
    assert method.predict(_image()).shape == (96, 96)  # zero-shot, at the given diameter
    assert method._model.diam_mean == 17.0 and method._size_model is not None


@pytest.mark.slow
def test_fine_tuning_starts_from_the_registry_weights(mirror):
    from cellbench.data.dataset import Sample
    from cellbench.instances import InstanceSet

    yy, xx = np.mgrid[:96, :96]
    labels = np.zeros((96, 96), np.int32)
    for k, (cy, cx) in enumerate([(20, 20), (20, 70), (70, 20), (70, 70), (45, 45)]):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < 49] = k + 1
    image = (20 + 150 * (labels > 0)).astype(np.uint8)
    config = CellposeConfig(pretrained="cyto3", n_epochs=1, bsize=64, batch_size=2, min_train_masks=1)
    method = CellposeMethod(config)
    history = method.train([Sample("disks", InstanceSet.from_label_image(labels), array=image)], seed=0)
    assert history.info["from"] == "cyto3" and method._size_model is None


def test_pretrained_settings_are_checked(mirror, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        CellposeConfig(pretrained="cyto3", pretrained_model="/x")
    with pytest.raises(DataError, match="is for sam, not cellpose"):
        CellposeMethod(CellposeConfig(pretrained="sam/vit_b")).predict(_image())
    with pytest.raises(DataError, match="set pretrained"):
        CellposeMethod(CellposeConfig()).predict(_image())


class Payload:
    """Stands for code a tampered size model could carry."""

    def __reduce__(self):
        return (print, ("ran",))


def test_size_model_is_read_without_running_pickled_code(tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.array({"A": Payload()}, dtype=object))
    with pytest.raises(DataError, match="not allowed in a size model"):
        read_size_model(tmp_path / "bad.npy")
    assert "ran" not in capsys.readouterr().out
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(DataError, match="not a Cellpose size model"):
        read_size_model(tmp_path / "plain.npy")
    _size_file(tmp_path / "size.npy", diam_mean=30.0)
    assert read_size_model(tmp_path / "size.npy")["diam_mean"] == 30.0


@pytest.mark.slow
def test_zero_shot_regime_of_cellbench_run(mirror, tmp_path):
    """`train_images: 0` with `pretrained: cyto3`: predicted and scored without training."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "runner"))
    from runner_helpers import write_tiny_dsb

    from cellbench.runner import experiment_from_dict, run_experiment

    data = write_tiny_dsb(tmp_path / "data")
    exp = experiment_from_dict({
        "name": "zero", "seeds": [0],
        "datasets": {"tiny": {"layout": "dsb", "path": str(data), "train": "train", "test": ["test"]}},
        "methods": {"cyto3": {"method": "cellpose", "config": {"pretrained": "cyto3"}, "regimes": ["zero-shot"]}},
        "regimes": {"zero-shot": {"train_images": 0}},
        "evaluation": {"thresholds": [0.5], "ground_truth": ["overlap"]},
    })
    summary = run_experiment(exp, tmp_path / "run")
    assert (summary.n_run, summary.n_failed) == (1, 0), summary.errors
