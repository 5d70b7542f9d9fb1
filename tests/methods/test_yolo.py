"""The ``yolo`` method (Ultralytics YOLO11-seg, AGPL-3.0 extra).

The training-set writer needs no Ultralytics and runs everywhere. The rest
needs ``ultralytics``, which is kept out of the main environment: those
tests are skipped there and run by ``make test-yolo`` in ``.venv-yolo``
(slow ones included: a 2592 x 1944 image, a second training, a fresh process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from skimage.draw import disk, ellipse, polygon

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.files import file_digest
from cellbench.instances import Instance, InstanceSet
from cellbench.methods import config_from_dict, get_method
from cellbench.methods.model_dir import load_model, save_model, train_summary
from cellbench.methods.preprocess import PreprocessConfig
from cellbench.methods.tiling import TileConfig
from cellbench.methods.adapters.yolo.dataset import instance_outline, write_dataset

needs_ultralytics = pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None,
                                       reason="needs ultralytics (cellbench[yolo], AGPL-3.0): `make test-yolo`")

CLASSES = ("type-a", "type-b")
#: YOLO11n from its yaml at 96 px, two epochs on the CPU; every detection kept (an untrained net scores low).
TINY = {"model_size": "n", "imgsz": 96, "epochs": 2, "batch": 2, "device": "cpu", "conf": 0.0, "max_det": 60}


def overlapping_sample(seed: int, *, shape=(96, 96), pairs=3) -> Sample:
    """Pairs of ellipses that overlap (one of each class per pair) on a dark noisy background."""
    rng = np.random.default_rng(seed)
    instances = []
    image = np.full(shape, 20.0)
    for k in range(pairs):
        r, c = 18 + 30 * (k % 3), 20 + int(rng.integers(0, 50))
        for j, dc in enumerate((0, 8)):
            mask = np.zeros(shape, bool)
            mask[ellipse(r, c + dc, 7, 6, shape=shape)] = True
            instances.append(Instance.from_mask(mask, class_id=j))
            image[mask] += 60 + 40 * j
    image = np.clip(image + rng.normal(0, 6, shape), 0, 255).astype(np.uint8)
    return Sample(f"pairs{seed}", InstanceSet(shape, tuple(instances), CLASSES), array=image)


def _rasterise(line: str, shape) -> tuple[int, np.ndarray]:
    values = line.split()
    xy = np.array([float(v) for v in values[1:]]).reshape(-1, 2) * np.array([shape[1], shape[0]])
    out = np.zeros(shape, bool)
    rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape)  # pixel-edge outline -> pixel centres inside
    out[rr, cc] = True
    return int(values[0]), out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# -- the training set on disk (no ultralytics needed) ---------------------------------------------------------
def test_overlapping_instances_become_one_polygon_each_with_their_class(tmp_path):
    sample = overlapping_sample(0, pairs=1)
    a, b = (i.to_full(sample.instances.shape) for i in sample.instances)
    assert (a & b).any()  # the two instances really overlap
    data = write_dataset(tmp_path, [sample], None, CLASSES, PreprocessConfig())
    lines = (tmp_path / "labels" / "train" / "00000.txt").read_text().splitlines()
    assert len(lines) == 2
    for line, inst in zip(lines, sample.instances):
        cls, mask = _rasterise(line, sample.instances.shape)
        assert cls == inst.class_id
        assert _iou(mask, inst.to_full(sample.instances.shape)) > 0.9
    spec = yaml.safe_load(data.read_text())
    assert spec["names"] == {0: "type-a", 1: "type-b"} and spec["val"] == spec["train"] == "images/train"
    assert (tmp_path / "images" / "train" / "00000.png").is_file()


def test_a_multi_part_instance_is_one_polygon_covering_every_part():
    mask = np.zeros((40, 40), bool)
    mask[5:12, 5:12] = True
    mask[25:35, 20:33] = True
    outline = instance_outline(Instance.from_mask(mask))
    out = np.zeros(mask.shape, bool)
    rr, cc = polygon(outline[:, 1] - 0.5, outline[:, 0] - 0.5, mask.shape)
    out[rr, cc] = True
    assert _iou(out, mask) > 0.9 and (out & mask)[5:12, 5:12].mean() > 0.8


def test_validation_images_get_their_own_split(tmp_path):
    data = write_dataset(tmp_path, [overlapping_sample(0)], [overlapping_sample(1)], CLASSES, PreprocessConfig())
    assert yaml.safe_load(data.read_text())["val"] == "images/val"
    assert len((tmp_path / "labels" / "val" / "00000.txt").read_text().splitlines()) == 6


def test_yolo_is_listed_with_its_licence_and_extra():
    cls = get_method("yolo")
    assert cls.licence.startswith("AGPL-3.0") and cls.extra == "yolo" and cls.supports_classes
    assert cls.default_tiling == TileConfig(tile=0)
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    extras = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    all_line = next(line for line in extras.splitlines() if line.startswith("all ="))
    assert "yolo" not in all_line and "ultralytics" not in all_line  # AGPL: not installed by [all] / [dev]


# -- with ultralytics ------------------------------------------------------------------------------------------
def make(**over):
    cls = get_method("yolo")
    return cls(config_from_dict(cls.Config, {**TINY, **over}))


@pytest.fixture(scope="module")
def trained():
    pytest.importorskip("ultralytics")
    method = make()
    calls = []

    def progress(iterable, **kw):
        calls.append(kw)
        return iterable

    history = method.train([overlapping_sample(1), overlapping_sample(2)], [overlapping_sample(3)], seed=0,
                           progress=progress)
    return method, history, calls


@needs_ultralytics
def test_training_records_each_epoch_and_shows_progress(trained):
    method, history, calls = trained
    assert [e.epoch for e in history.epochs] == [0, 1] and calls and calls[0]["desc"] == "yolo training"
    assert all(np.isfinite(e.loss) and e.loss > 0 for e in history.epochs)
    assert {"box_loss", "seg_loss", "cls_loss"} <= set(history.epochs[0].extra)
    assert all(e.val_score is not None and 0 <= e.val_score <= 1 for e in history.epochs)
    assert history.info["classes"] == list(CLASSES) and history.info["from"] == "scratch"


@needs_ultralytics
def test_predictions_keep_classes_scores_and_overlaps(trained, tmp_path):
    method, history, _ = trained
    image = overlapping_sample(4).load_image()
    found = method.predict(image)
    assert found.shape == image.shape and found.classes == CLASSES and len(found) > 0
    assert set(found.class_ids.tolist()) <= {0, 1}
    scores = found.scores
    assert scores is not None and np.all((scores >= 0) & (scores <= 1)) and np.all(np.diff(scores) <= 0)
    assert found.n_overlapping > 0  # nothing flattens the detections

    record = save_model(method, tmp_path / "m", train_summary=train_summary([overlapping_sample(1)]), seed=0,
                        history=history, tiling=TileConfig(tile=0))
    assert set(record["weights"]) == {"yolo.pt", "yolo.json"}
    assert (tmp_path / "m" / "weights" / "yolo.pt").read_bytes()[:2] == b"PK"  # a torch zip, not a pickle
    again = load_model(tmp_path / "m").method.predict(image)
    assert [(i.bbox, i.mask.tobytes(), i.score, i.class_id) for i in again] == \
        [(i.bbox, i.mask.tobytes(), i.score, i.class_id) for i in found]


@needs_ultralytics
@pytest.mark.slow
def test_masks_match_ultralytics_retina_masks_on_a_large_image(trained):
    """Masks pasted box by box equal Ultralytics' full-image ``retina_masks`` on a 2592 x 1944 image."""
    from ultralytics.models.yolo.segment import SegmentationPredictor

    from cellbench.methods.adapters.yolo.dataset import to_uint8_rgb

    method, _, _ = trained
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(30, 8, (1944, 2592)), 0, 255).astype(np.uint8)
    for k in range(40):
        image[disk((100 + 45 * k, 200 + 55 * k), 40, shape=image.shape)] = 200
    found = method.predict(image)
    assert found.shape == (1944, 2592) and len(found) > 0
    cfg = method.config
    reference = SegmentationPredictor(overrides={"imgsz": cfg.imgsz, "conf": cfg.conf, "iou": cfg.iou,
                                                 "max_det": cfg.max_det, "device": "cpu", "retina_masks": True,
                                                 "save": False, "verbose": False, "rect": True, "mode": "predict"})
    reference.setup_model(model=method._model, verbose=False)
    bgr = np.ascontiguousarray(to_uint8_rgb(image, cfg.preprocess)[..., ::-1])
    result = reference(source=bgr)[0]
    ref_masks = result.masks.data.numpy().astype(bool)
    ours = [i for i in found]
    assert len(ours) == len(ref_masks)
    xor = sum(int((i.to_full(found.shape) ^ m).sum()) for i, m in zip(ours, ref_masks))
    union = sum(int((i.to_full(found.shape) | m).sum()) for i, m in zip(ours, ref_masks))
    assert xor <= 0.02 * union
    np.testing.assert_allclose([i.score for i in ours], result.boxes.conf.numpy(), rtol=1e-5)


@needs_ultralytics
@pytest.mark.slow
def test_same_seed_same_weights(trained):
    method, _, _ = trained
    again = make()
    again.train([overlapping_sample(1), overlapping_sample(2)], [overlapping_sample(3)], seed=0)
    assert all(np.array_equal(v.numpy(), again._state[k].numpy()) for k, v in method._state.items())


def _tamper(model_dir: Path, name: str, data: bytes) -> None:
    """Replace a weight file and update its checksum, so only the content check can refuse it."""
    (model_dir / "weights" / name).write_bytes(data)
    record = json.loads((model_dir / "model.json").read_text())
    record["weights"][name] = file_digest(model_dir / "weights" / name)
    (model_dir / "model.json").write_text(json.dumps(record))


@needs_ultralytics
def test_pickled_weights_in_the_model_directory_are_refused(trained, tmp_path):
    import torch

    method, history, _ = trained
    folder = tmp_path / "m"
    save_model(method, folder, train_summary=train_summary([overlapping_sample(1)]), seed=0, history=history,
               tiling=TileConfig(tile=0))
    _tamper(folder, "yolo.pt", pickle.dumps({"model": os.getcwd}))  # a bare pickle
    with pytest.raises(DataError, match="pickle"):
        load_model(folder)
    buffer = tmp_path / "ultralytics.pt"
    torch.save({"model": method._model}, buffer)  # Ultralytics' own format: the pickled module, inside a zip
    _tamper(folder, "yolo.pt", buffer.read_bytes())
    # refused by weights_only, or (once Ultralytics' restricted loader has allowed its model classes in this
    # process) read but refused as not a state dict of tensors
    with pytest.raises(DataError, match="not a readable torch weights file|not a state dict of tensors"):
        load_model(folder)


def _ultralytics_checkpoint(path: Path, n_classes: int = 80) -> Path:
    """A checkpoint in the layout of Ultralytics' released ``yolo11n-seg.pt`` (the pickled fp16 module)."""
    import torch
    from ultralytics.nn.tasks import SegmentationModel

    model = SegmentationModel("yolo11n-seg.yaml", nc=n_classes, verbose=False)
    torch.save({"date": "2024-09-30", "version": "8.3.0", "epoch": -1, "best_fitness": None, "model": model.half(),
                "ema": None, "updates": None, "optimizer": None, "train_args": {"imgsz": 640}}, path)
    return path


@needs_ultralytics
def test_pretrained_weights_by_registry_name_from_a_mirror(tmp_path, monkeypatch):
    """``yolo/yolo11n-seg`` resolves through the registry (here from a local mirror folder, trusted on first
    use); every tensor but the 80-class head layers is taken."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _ultralytics_checkpoint(mirror / "yolo11n-seg.pt")
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", str(mirror))
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache"))
    import torch

    kept = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    method = make(pretrained="yolo/yolo11n-seg", epochs=1)
    history = method.train([overlapping_sample(1)], seed=0)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == kept  # Ultralytics' changes undone
    info = history.info
    assert info["name"] == "yolo/yolo11n-seg" and 0.9 * info["of"] < info["transferred"] < info["of"]
    assert (tmp_path / "cache" / "models" / "yolo" / "yolo11n-seg" / "yolo11n-seg.pt").is_file()
    with pytest.raises(DataError, match="model size 'n'"):
        make(pretrained="yolo/yolo11n-seg", model_size="s").train([overlapping_sample(1)], seed=0)


@needs_ultralytics
def test_a_checkpoint_that_pickles_code_is_refused(tmp_path):
    import torch

    from cellbench.methods.adapters.yolo.runtime import checkpoint_state

    path = tmp_path / "evil.pt"
    torch.save({"model": os.system}, path)
    with pytest.raises(DataError, match="safely"):
        checkpoint_state(path)
    state, yaml_dict = checkpoint_state(_ultralytics_checkpoint(tmp_path / "yolo11n-seg.pt", 3))
    assert yaml_dict["nc"] == 3 and all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


@needs_ultralytics
def test_unknown_ultralytics_argument_is_a_data_error():
    with pytest.raises(DataError, match="Ultralytics refused"):
        make(train_args={"no_such_argument": 1}).train([overlapping_sample(1)], seed=0)
    with pytest.raises(ValueError, match="cellbench sets"):
        make(train_args={"epochs": 3})


_OFFLINE_SCRIPT = """
import json, socket, sys
attempts = []
def refuse(what):
    def call(*args, **kwargs):
        attempts.append(f"{what} {args[1:] if what.startswith('socket.') else args}"[:200])
        raise OSError("network disabled by the test")
    return call
loopback = ("127.0.0.1", "::1", "localhost")
real_connect = socket.socket.connect
def connect(sock, address):
    if isinstance(address, tuple) and address[0] in loopback or isinstance(address, (str, bytes)):
        return real_connect(sock, address)
    return refuse("socket.connect")(sock, address)
socket.socket.connect = connect
socket.socket.connect_ex = lambda sock, address: connect(sock, address) or 0
socket.getaddrinfo = refuse("getaddrinfo")
socket.create_connection = refuse("create_connection")
sys.path.insert(0, sys.argv[1])
from test_yolo import make, overlapping_sample
method = make(epochs=1)
method.train([overlapping_sample(1)], [overlapping_sample(2)], seed=0)
found = method.predict(overlapping_sample(3).load_image())
print(json.dumps({"attempts": attempts, "found": len(found)}))
"""


@needs_ultralytics
@pytest.mark.slow
def test_train_and_predict_never_touch_the_network_or_home(tmp_path):
    """In a fresh process (Ultralytics checks the network when imported) with every non-loopback
    connection and DNS look-up refused and recorded: none is attempted, nothing is written in $HOME."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "CELLBENCH_"))}
    # matplotlib (a cellbench dependency, not Ultralytics') keeps its font cache in its own folder
    env.update(HOME=str(home), CELLBENCH_CACHE=str(tmp_path / "cache"), XDG_CONFIG_HOME=str(home / ".config"),
               MPLCONFIGDIR=str(tmp_path / "matplotlib"))
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_OFFLINE_SCRIPT), str(Path(__file__).parent)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["attempts"] == [] and report["found"] > 0
    assert list(home.rglob("*")) == []
    found = list((tmp_path / "cache" / "ultralytics").rglob("settings.json"))  # Ultralytics adds a sub-folder
    assert len(found) == 1
    settings = json.loads(found[0].read_text())
    assert settings["sync"] is False and settings["mlflow"] is False
