"""nnU-Net adapter: the raw-format writer, the semantic classes and their conversion back to instances.

The full train / save / load / predict round trip with the 1-epoch trainer is in test_contract.py (slow:
nnU-Net plans, preprocesses and starts worker processes).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet, flatten
from cellbench.matching import match_labels
from cellbench.methods.adapters.nnunet.raw import DATASET_ID
from cellbench.methods.adapters.nnunet import (
    NnUNetConfig,
    NnUNetMethod,
    class_names,
    instances_from_semantic,
    nnunet_input,
    semantic_target,
    write_raw_dataset,
)


def two_touching_cells() -> np.ndarray:
    labels = np.zeros((12, 16), np.int32)
    labels[2:10, 2:8] = 1
    labels[2:10, 8:14] = 2
    return labels


def test_boundary_target_separates_touching_cells():
    target = semantic_target(two_touching_cells(), "boundary", boundary_px=1)
    assert set(np.unique(target)) == {0, 1, 2}
    assert (target[:, 7:9] != 1).all()  # where the cells touch: boundary, never interior
    assert (target[3:9, 3:7] == 1).all() and (target[3:9, 9:13] == 1).all()
    assert (target[two_touching_cells() == 0] == 0).all()


def test_wider_boundary_and_foreground_target():
    lab = two_touching_cells()
    wide = semantic_target(lab, "boundary", boundary_px=2)
    assert (wide == 1).sum() < (semantic_target(lab, "boundary") == 1).sum()
    np.testing.assert_array_equal(semantic_target(lab, "foreground"), (lab > 0).astype(np.uint8))


def test_semantic_round_trip_recovers_the_cells():
    """One-hot classes of the boundary target turned back into instances: the same two cells."""
    lab = two_touching_cells()
    target = semantic_target(lab, "boundary")
    probs = np.stack([(target == k).astype(np.float32) for k in range(3)])
    found = instances_from_semantic(probs, "boundary")
    assert len(found) == 2
    assert match_labels(lab, flatten(found).labels, (0.9,))[0].tp == 2
    assert all(i.score == pytest.approx(1.0) for i in found)


def test_foreground_target_merges_touching_cells_and_drops_small_ones():
    lab = two_touching_cells()
    lab[0, 15] = 3  # a one-pixel speck
    probs = np.stack([(lab == 0), (lab > 0)]).astype(np.float32)
    assert len(instances_from_semantic(probs, "foreground")) == 2
    found = instances_from_semantic(probs, "foreground", min_size=2)
    assert len(found) == 1 and found[0].area == 96


def test_scores_are_mean_cell_probability():
    probs = np.zeros((3, 8, 8), np.float32)
    probs[0] = 1.0
    probs[:, 2:6, 2:6] = np.array([0.2, 0.5, 0.3])[:, None, None]
    found = instances_from_semantic(probs, "boundary")
    assert len(found) == 1 and found[0].score == pytest.approx(0.8)


def test_raw_dataset_is_in_nnunet_layout(tmp_path):
    lab = two_touching_cells()
    rgb = np.random.default_rng(0).integers(0, 255, (*lab.shape, 3)).astype(np.uint8)
    train = [Sample("a", InstanceSet.from_label_image(lab), array=rgb)]
    valid = [Sample("b", InstanceSet.from_label_image(lab), array=rgb[::-1])]
    names = write_raw_dataset(tmp_path, train, valid, target="boundary")
    assert names == (["case_0000"], ["case_0001"])
    root = tmp_path / "Dataset001_cellbench"
    dataset = json.loads((root / "dataset.json").read_text())
    assert dataset["labels"] == class_names("boundary") and dataset["numTraining"] == 2
    assert dataset["channel_names"] == {"0": "microscopy", "1": "microscopy", "2": "microscopy"}
    assert dataset["file_ending"] == ".tif" and dataset["overwrite_image_reader_writer"] == "NaturalImage2DIO"
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == [
        f"case_{k:04d}_{c:04d}.tif" for k in range(2) for c in range(3)]
    np.testing.assert_array_equal(tifffile.imread(root / "imagesTr" / "case_0001_0002.tif"), rgb[::-1, :, 2])
    np.testing.assert_array_equal(tifffile.imread(root / "labelsTr" / "case_0000.tif"), semantic_target(lab, "boundary"))


def test_nnunet_reads_the_raw_dataset_as_written(tmp_path):
    """nnU-Net's own reader gives the arrays prediction feeds it (nnunet_input) and the class image."""
    pytest.importorskip("nnunetv2")
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    lab = two_touching_cells()
    image = np.random.default_rng(1).normal(100, 20, lab.shape).astype(np.float32)
    write_raw_dataset(tmp_path, [Sample("a", InstanceSet.from_label_image(lab), array=image)], target="foreground")
    root = tmp_path / "Dataset001_cellbench"
    read, props = NaturalImage2DIO().read_images([str(root / "imagesTr" / "case_0000_0000.tif")])
    np.testing.assert_array_equal(read, nnunet_input(image, 1))
    assert tuple(props["spacing"]) == (999, 1, 1)
    seg, _ = NaturalImage2DIO().read_seg(str(root / "labelsTr" / "case_0000.tif"))
    np.testing.assert_array_equal(seg[0, 0], (lab > 0).astype(np.float32))


def test_planning_keeps_torch_threads_and_takes_n_proc_da_0(tmp_path, monkeypatch):
    """nnU-Net's planner sets torch's threads to nnUNet_n_proc_DA and fails on 0 (a value users set)."""
    pytest.importorskip("nnunetv2")
    import torch

    from cellbench.methods.adapters.nnunet.run import nnunet_environment, plan_and_preprocess

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    lab = two_touching_cells()
    image = np.random.default_rng(1).normal(100, 20, lab.shape).astype(np.float32)
    threads = torch.get_num_threads()
    with nnunet_environment(tmp_path) as env:
        write_raw_dataset(env["nnUNet_raw"], [Sample("a", InstanceSet.from_label_image(lab), array=image)],
                          target="foreground")
        plans = plan_and_preprocess(DATASET_ID, gpu_memory_target_gb=1.0, batch_size=2)
    assert plans["configurations"]["2d"]["batch_size"] == 2
    assert torch.get_num_threads() == threads and os.environ["nnUNet_n_proc_DA"] == "0"


def test_channels_must_agree(tmp_path):
    lab = two_touching_cells()
    samples = [Sample("grey", InstanceSet.from_label_image(lab), array=np.zeros(lab.shape, np.uint8)),
               Sample("rgb", InstanceSet.from_label_image(lab), array=np.zeros((*lab.shape, 3), np.uint8))]
    with pytest.raises(DataError, match="'rgb' has 3 channel"):
        write_raw_dataset(tmp_path, samples)


def test_input_channels_follow_the_network():
    rgb = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    assert nnunet_input(rgb).shape == (3, 1, 2, 4)
    np.testing.assert_allclose(nnunet_input(rgb, 1)[0, 0], rgb.mean(axis=-1))
    assert nnunet_input(rgb[..., 0], 3).shape == (3, 1, 2, 4)
    with pytest.raises(DataError, match="3 channels; this nnU-Net model takes 2"):
        nnunet_input(rgb, 2)


def test_config_is_checked():
    with pytest.raises(ValueError, match="trainer"):
        NnUNetConfig(trainer="MyTrainer")
    with pytest.raises(ValueError, match="iterations_per_epoch"):
        NnUNetConfig(iterations_per_epoch=0)
    with pytest.raises(DataError, match="train or load"):
        NnUNetMethod().predict(np.zeros((8, 8)))


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="expected one nnU-Net checkpoint_final.pth"):
        NnUNetMethod().load_weights(tmp_path)


class _Stop(Exception):
    pass


def test_threads_run_planning_training_and_prediction_on_that_many_threads(monkeypatch):
    """The DSB config names 1 thread: the count changes the trained weights, so README's row needs it."""
    pytest.importorskip("nnunetv2")
    import torch

    from cellbench.methods.adapters.nnunet import run

    seen = []

    def record(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return {}

    def record_and_stop(*args, **kwargs):
        record()
        raise _Stop

    monkeypatch.setattr(run, "plan_and_preprocess", record)
    monkeypatch.setattr(run, "train_network", record_and_stop)
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    method = NnUNetMethod(NnUNetConfig(threads=other))
    lab = two_touching_cells()
    with pytest.raises(_Stop):
        method.train([Sample("a", InstanceSet.from_label_image(lab), array=lab.astype(np.float32))])
    method._network = type("Net", (), {"dataset_json": {"channel_names": {"0": "x"}}})()
    predictor = type("Predictor", (), {"predict_single_npy_array": staticmethod(record_and_stop)})()
    monkeypatch.setattr(method, "_require_predictor", lambda: predictor)
    with pytest.raises(_Stop):
        method.probabilities(lab.astype(np.float32))
    assert seen == [other, other, other] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be 0"):
        NnUNetConfig(threads=-1)


def test_augmentation_blurs_choose_no_convolution_by_timing():
    """nnU-Net's blur benchmark picked direct or FFT convolution by a race, and so the weights (issue 14)."""
    pytest.importorskip("nnunetv2")
    from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    from cellbench.methods.adapters.nnunet.run import _untimed

    blurs = [GaussianBlurTransform(blur_sigma=(0.5, 1.0), benchmark=True) for _ in range(2)]
    pipeline = ComposeTransforms([RandomTransform(blurs[0], apply_probability=0.2), ComposeTransforms([blurs[1]])])
    assert _untimed(pipeline) is pipeline
    assert [b.benchmark for b in blurs] == [False, False]
