"""The method contract, for every entry of METHODS: train, save, load, predict, same result after reload."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator

import numpy as np
import pytest

from cellbench.instances import InstanceSet, flatten
from cellbench.matching import match_labels
from cellbench.methods import METHODS, config_from_dict, config_to_dict, get_method
from cellbench.methods.base import TrainHistory
from cellbench.methods.model_dir import load_model, save_model, train_summary
from cellbench.methods.tiling import TileConfig

# Small settings (as a config file would give them) so every method trains in seconds on tiny images.
FAST: dict[str, dict] = {
    "watershed": {"sigmas": [0.0, 1.0], "threshold_scales": [0.9, 1.0], "distance_sigmas": [0.0, 1.0],
                  "min_distance_fractions": [0.3, 0.5]},
    # An untrained-ish network: a low cellprob threshold and no flow check, so it still finds something.
    "cellpose": {"n_epochs": 1, "bsize": 64, "batch_size": 2, "min_train_masks": 1, "diam_mean": 12.0,
                 "cellprob_threshold": -6.0, "flow_threshold": 0.0},
    # The `tiny` backbone is a random small SAM meant for tests; thresholds off so it keeps what it finds.
    "cellseg1": {"backbone": "tiny",
                 "train": {"epochs": 1, "patch_size": 64, "min_patches": 2, "max_positive": 4, "max_negative": 2,
                           "batch_size": 2, "grad_accum": 1, "min_cell_area": 20},
                 "inference": {"points_per_side": 4, "points_batch": 16, "pred_iou_thresh": -1e9,
                               "stability_thresh": 0.0, "max_area_fraction": 1.0}},
    # ResNet-18-FPN with narrow heads, two steps of 64 px crops; every detection kept (untrained scores are low).
    "maskrcnn": {"backbone": "resnet18", "head_width": 16, "patch_size": 64, "batch_size": 2, "epochs": 1,
                 "crops_per_epoch": 2, "anchor_sizes": [8, 16, 32, 64, 128], "roi_batch_size": 16,
                 "rpn_post_nms": 50, "detections_per_image": 20, "score_threshold": 0.0, "mask_threshold": 0.0},
    # MS R-CNN and Cascade Mask R-CNN: maskrcnn's tiny settings (their heads on the same ResNet-18-FPN).
    "msrcnn": {"backbone": "resnet18", "head_width": 16, "patch_size": 64, "batch_size": 2, "epochs": 1,
               "crops_per_epoch": 2, "anchor_sizes": [8, 16, 32, 64, 128], "roi_batch_size": 16,
               "rpn_post_nms": 50, "detections_per_image": 20, "score_threshold": 0.0, "mask_threshold": 0.0},
    "cascade": {"backbone": "resnet18", "head_width": 16, "patch_size": 64, "batch_size": 2, "epochs": 1,
                "crops_per_epoch": 2, "anchor_sizes": [8, 16, 32, 64, 128], "roi_batch_size": 16,
                "rpn_post_nms": 50, "detections_per_image": 20, "score_threshold": 0.0, "mask_threshold": 0.0},
    # SOLOv2 on ResNet-18-FPN with narrow branches and small grids, two steps of 64 px crops; every mask kept
    # (untrained scores are low, untrained mask probabilities near 0.5).
    "solov2": {"backbone": "resnet18", "head_width": 16, "mask_width": 16, "kernel_channels": 16,
               "num_grids": [12, 10, 8, 6, 4], "patch_size": 64, "batch_size": 2, "epochs": 1, "crops_per_epoch": 2,
               "detections_per_image": 20, "score_threshold": 0.0, "update_threshold": 0.0, "mask_threshold": 0.3},
    # RetinaMask on ResNet-18-FPN (P2-P6) with narrow heads, two steps of 64 px crops; every detection kept
    # (untrained scores are low).
    "retinamask": {"backbone": "resnet18", "head_width": 16, "pyramid_levels": [2, 3, 4, 5, 6],
                   "anchor_sizes": [8, 16, 32, 64, 128], "mask_rois": 8, "patch_size": 64, "batch_size": 2,
                   "epochs": 1, "crops_per_epoch": 2, "detections_per_image": 20, "score_threshold": 0.0,
                   "mask_threshold": 0.3},
    # CenterMask on ResNet-18-FPN with narrow FCOS towers and mask head, two steps of 64 px crops; every detection
    # kept (untrained scores are low, untrained mask probabilities near 0.5).
    "centermask2": {"backbone": "resnet18", "head_width": 16, "mask_width": 16, "patch_size": 64, "batch_size": 2,
                    "epochs": 1, "crops_per_epoch": 2, "train_proposals": 20, "mask_batch_size": 8,
                    "detections_per_image": 20, "score_threshold": 0.0, "mask_threshold": 0.3},
    # The random `tiny` SAM zero-shot (on 64 px tiles: TILING); thresholds off so it keeps what it finds.
    "sam": {"backbone": "tiny",
            "inference": {"points_per_side": 4, "points_batch": 16, "pred_iou_thresh": -1e9, "stability_thresh": 0.0,
                          "max_area_fraction": 1.0}},
    # A small StarDist network (8 rays, depth 2) for 20 steps of 64 px patches; few thresholds to tune.
    "stardist": {"n_rays": 8, "unet_n_depth": 2, "unet_n_filter_base": 8, "net_conv_after_unet": 16,
                 "train_patch_size": [64, 64], "train_batch_size": 4, "train_epochs": 2, "train_steps_per_epoch": 10,
                 "train_learning_rate": 0.003, "nms_threshs": [0.4], "iou_threshs": [0.5]},
}
# unet / maunet: narrow networks, a few steps of 64 px patches at a high learning rate, one thread.
FAST["unet"] = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1, "threads": 1,
                "train": {"epochs": 12, "batch_size": 2, "patch_size": 64, "steps_per_epoch": 2, "lr": 0.01},
                "inference": {"window_batch": 1}}
# An untrained-ish MAU-Net: every pixel foreground and interior, so it still finds something.
FAST["maunet"] = {"backbone": "tu-mobilenetv3_small_050", "width": 8, "threads": 1, "foreground_threshold": 0.0,
                  "interior_threshold": 0.0, "train": {"epochs": 3, "batch_size": 2, "patch_size": 64, "lr": 0.01},
                  "augment": {"zoom_prob": 0.0}, "inference": {"scales": [1.0], "window_batch": 1}}
# mesmer: ResNet-18 under a 16-channel pyramid and 8-channel heads, 64 px crops; one grey channel (DSB-like), a
# low h-maxima height and every pixel interior, so an untrained network still finds something.
FAST["mesmer"] = {"backbone": "resnet18", "feature_size": 16, "head_filters": 8, "head_dense": 8, "threads": 1,
                  "compartment": "nuclear", "channels": ["grey", None], "maxima_threshold": 0.001,
                  "interior_threshold": 0.0, "small_objects": 0,
                  "train": {"epochs": 3, "batch_size": 2, "patch_size": 64, "lr": 0.01},
                  "inference": {"window_batch": 1}}
# featurenet: a 21 px receptive field at 8 / 16 channels, a few steps of 64 px patches at a high learning rate.
FAST["featurenet"] = {"receptive_field": 21, "conv_filters": 8, "dense_filters": 16, "threads": 1, "min_size": 4,
                      "foreground_threshold": 0.3,
                      "train": {"epochs": 6, "batch_size": 2, "patch_size": 64, "steps_per_epoch": 2, "lr": 0.05},
                      "inference": {"window_batch": 1}}
# mediar: mit_b0 with a narrow decoder, two steps of 64 px crops; low probability threshold, no flow check.
FAST["mediar"] = {"encoder": "mit_b0", "decoder_channels": [32, 16, 16, 16, 16], "decoder_pab_channels": 16,
                  "crop": 64, "roi": 64, "epochs": 2, "batch_size": 2, "crops_per_epoch": 2, "learning_rate": 0.001,
                  "tta": False, "prob_threshold": 0.3, "flow_threshold": 0.0}
# nnunet: the 1-epoch trainer for 3 batches of 2 on a plan for 1 GB; every predicted object kept.
FAST["nnunet"] = {"trainer": "nnUNetTrainer_1epoch", "iterations_per_epoch": 3, "val_iterations_per_epoch": 1,
                  "batch_size": 2, "gpu_memory_target_gb": 1.0, "min_size": 0}
# mask2former: the random `tiny` Swin with 32-channel decoders and 12 queries, one step of 64 px crops; every
# query kept (untrained scores are low).
FAST["mask2former"] = {"backbone": "tiny", "hidden_dim": 32, "feature_size": 32, "encoder_layers": 1,
                       "decoder_layers": 3, "num_heads": 2, "dim_feedforward": 64, "encoder_feedforward_dim": 64,
                       "num_queries": 12, "train_num_points": 256, "crop_size": 64, "batch_size": 2, "epochs": 1,
                       "crops_per_epoch": 2, "score_threshold": 0.0, "mask_threshold": 0.3}
#: The model's tiling of the methods that tile themselves, as train_model / load_model set it: 2 x 2 tiles of the
#: 96 px test images (CellSeg1's default, tiles of the 64 px training patch, needs an overlap under 64).
TILING = {"sam": TileConfig(tile=64, overlap=16), "cellseg1": TileConfig(tile=64, overlap=16)}
#: Import names a method's fast config needs beyond the core (its extra); missing ones skip, with the name.
NEEDS: dict[str, tuple[str, ...]] = {"cellpose": ("torch", "cellpose"), "cellseg1": ("torch", "segment_anything")}
NEEDS["stardist"] = ("tensorflow", "stardist")
NEEDS["nnunet"] = ("torch", "nnunetv2")
NEEDS["maskrcnn"] = ("torch", "torchvision")
NEEDS["msrcnn"] = NEEDS["cascade"] = NEEDS["solov2"] = NEEDS["centermask2"] = ("torch", "torchvision")
NEEDS["retinamask"] = ("torch", "torchvision")
NEEDS["mask2former"] = ("torch", "transformers")
NEEDS["sam"] = ("torch", "segment_anything")
NEEDS["unet"] = ("torch", "monai")
NEEDS["mesmer"] = ("torch", "torchvision", "monai")
NEEDS["featurenet"] = ("torch", "monai")
NEEDS["maunet"] = ("torch", "monai", "segmentation_models_pytorch", "timm")
NEEDS["mediar"] = ("torch", "segmentation_models_pytorch", "cellpose")
NEEDS["yolo"] = ("torch", "ultralytics")  # the AGPL extra, tested by `make test-yolo` in .venv-yolo
# yolo: YOLO11n from its yaml at 96 px for 2 epochs on the CPU; every detection kept (untrained scores are low).
FAST["yolo"] = {"model_size": "n", "imgsz": 96, "epochs": 2, "batch": 2, "device": "cpu", "conf": 0.0,
                "max_det": 50}
ALL = sorted(METHODS)
#: More cases run through the whole contract: case -> (method, fast config, import names beyond NEEDS[method]).
VARIANTS: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    # Mask R-CNN on Swin-T (the 18-methods paper's Swin-T), for the timm backbones' path: channels-last
    # features, windows padded to any crop and tile size.
    "maskrcnn-swin_t": ("maskrcnn", {**FAST["maskrcnn"], "backbone": "swin_t"}, ("timm",)),
}
CASES = ALL + sorted(VARIANTS)
#: Methods whose train / save / load round trip takes minutes (nnU-Net plans, preprocesses and starts worker
#: processes, ~1 min idle): their trained-model tests carry the slow marker.
SLOW = {"nnunet"}


def fast_config(case: str):
    name, values, extra = VARIANTS.get(case, (case, FAST.get(case), ()))
    for module in NEEDS.get(name, ()) + extra:
        pytest.importorskip(module)
    cls = get_method(name)
    return config_from_dict(cls.Config, values)


def make(case: str):
    return get_method(VARIANTS.get(case, (case,))[0])(fast_config(case))


def other_threads() -> int:
    """A torch thread count other than this process's, so that a method that ignores its ``threads`` shows."""
    import torch

    return 1 if torch.get_num_threads() != 1 else 2


@contextlib.contextmanager
def threads_at_forward(seen: list[int]) -> Iterator[None]:
    """Append torch's thread count at every module forward call inside (any network of any torch method)."""
    import torch

    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda *args: seen.append(torch.get_num_threads()))
    try:
        yield
    finally:
        handle.remove()


def same(a: InstanceSet, b: InstanceSet) -> bool:
    return a.shape == b.shape and [(i.bbox, i.mask.tobytes(), i.score) for i in a] == \
        [(i.bbox, i.mask.tobytes(), i.score) for i in b]


def test_every_method_has_a_fast_config_here():
    assert sorted(FAST) == ALL, "add a fast config to FAST for every METHODS entry (and none for others)"
    assert set(NEEDS) <= set(METHODS) and {method for method, _, _ in VARIANTS.values()} <= set(METHODS)


@pytest.fixture(scope="module", params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def trained(request, blobs):
    """Each method trained once on the tiny set (with validation and a progress bar); a method with a
    ``threads`` field trains on :func:`other_threads`, and ``seen`` holds the thread counts its networks ran on."""
    method = make(request.param)
    calls: list[dict] = []
    seen: list[int] = []

    def progress(iterable, **kw):
        calls.append(kw)
        return iterable

    watch = contextlib.nullcontext()
    if hasattr(method.config, "threads"):
        method = type(method)(dataclasses.replace(method.config, threads=other_threads()))
        watch = threads_at_forward(seen)
    method.tiling = TILING.get(method.name)  # as train_model sets it (None: the others' validation tiles by default)
    with watch:
        history = method.train(blobs["train"], blobs["valid"], seed=0, progress=progress)
    return method, history, calls, seen


def test_training_reports_history_and_progress(trained):
    method, history, calls, _ = trained
    assert isinstance(history, TrainHistory) and history.epochs and calls
    assert isinstance(history.val_metric, str) and history.val_metric  # validation images were given
    scores = [e.val_score for e in history.epochs if e.val_score is not None]
    assert scores and all(np.isfinite(scores))
    if history.val_metric.startswith("f1"):
        assert all(0.0 <= v <= 1.0 for v in scores)
    assert all(np.isfinite(e.loss) for e in history.epochs) and history.wall_s > 0


def test_save_load_predict_gives_the_same_result(trained, blobs, tmp_path):
    method, history, _, _ = trained
    image = blobs["test"][0].load_image()
    found = method.predict(image)
    assert isinstance(found, InstanceSet) and found.shape == image.shape[:2]
    assert len(found) > 0  # so that "the same after reload" compares something

    tiling = method.tiling or TileConfig(tile=64, overlap=32)  # a method that tiles itself: the one it predicted with
    record = save_model(method, tmp_path / "model", train_summary=train_summary(blobs["train"]), seed=0,
                        history=history, tiling=tiling)
    assert json.loads((tmp_path / "model" / "model.json").read_text())["method"] == method.name
    assert record["train"]["n_images"] == 2 and record["history"]["epochs"]
    loaded = load_model(tmp_path / "model")
    assert loaded.name == method.name and loaded.seed == 0
    assert loaded.tiling == tiling and loaded.history == history
    assert loaded.method.config == method.config
    assert same(loaded.method.predict(image), found)
    tiled = loaded.predict(image)
    assert isinstance(tiled, InstanceSet) and tiled.shape == image.shape[:2]


def test_same_seed_same_result(trained, blobs):
    method = trained[0]
    again = type(method)(method.config)  # the fixture's config: the same thread count too
    again.tiling = method.tiling
    again.train(blobs["train"], blobs["valid"], seed=0)
    image = blobs["test"][0].load_image()
    assert same(again.predict(image), method.predict(image))


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip_through_json(name):
    config = fast_config(name)
    cls = get_method(name)
    assert isinstance(config, cls.Config) and config != cls.Config()
    again = config_from_dict(cls.Config, json.loads(json.dumps(config_to_dict(config))))
    assert again == config
    assert config_from_dict(cls.Config, {}) == cls.Config()


def test_watershed_learns_to_segment_blobs(blobs):
    method = make("watershed")
    method.train(blobs["train"], seed=0)
    test = blobs["test"][0]
    pred = flatten(method.predict(test.load_image())).labels
    assert match_labels(flatten(test.instances).labels, pred, (0.5,))[0].f1 >= 0.9


def test_untrained_prediction_is_refused_for_cellpose(blobs):
    method = make("cellpose")
    with pytest.raises(ValueError, match="train or load"):
        method.predict(blobs["test"][0].load_image())


#: Ultralytics sets torch's threads itself for its runs; TensorFlow (StarDist) and watershed have no torch threads.
NO_THREADS_FIELD = {"yolo", "stardist", "watershed"}


def test_every_torch_method_has_a_threads_field():
    """The thread count changes what a CPU training computes, so a config must be able to name it."""
    have = {n for n in ALL if "threads" in {f.name for f in dataclasses.fields(get_method(n).Config)}}
    assert have == set(ALL) - NO_THREADS_FIELD
    for name in have:
        with pytest.raises(ValueError, match="threads must be 0"):
            config_from_dict(get_method(name).Config, {"threads": -1})


def test_training_and_prediction_run_on_the_configured_threads(trained, blobs):
    """``threads`` holds for every network call of training (validation included) and prediction, and the
    process's own count is back afterwards."""
    import torch

    method, _, _, seen = trained
    if not hasattr(method.config, "threads"):
        pytest.skip(f"{method.name} has no threads field")
    threads, before = method.config.threads, torch.get_num_threads()
    assert threads != before and seen and set(seen) == {threads}
    at_predict: list[int] = []
    with threads_at_forward(at_predict):
        method.predict(blobs["test"][0].load_image())
    assert at_predict and set(at_predict) == {threads}
    assert torch.get_num_threads() == before
