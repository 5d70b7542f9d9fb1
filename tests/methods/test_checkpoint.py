"""Per-epoch checkpoints: a training stopped after an epoch and resumed ends with the weights of an uninterrupted one.

For every method whose training loop cellbench owns (``resumable``), a tiny
configuration trains two epochs straight, and again with a stop after the
first epoch (the progress bar raises, as the GUI's Stop does) followed by a
resume in a new method object: the weights and the history agree bit for bit.
Then what must be refused: a changed config, a damaged or foreign file.
"""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.methods import config_from_dict, get_method
from cellbench.methods.checkpoint import CHECKPOINT_FILE, EpochCheckpoint, has_checkpoint

# Two epochs each, validation every epoch where the method keeps its best epoch.
TINY: dict[str, dict] = {
    "cellseg1": {"backbone": "tiny", "lora_dropout": 0.1,
                 "train": {"epochs": 2, "patch_size": 64, "min_patches": 2, "max_positive": 4, "max_negative": 2,
                           "batch_size": 2, "grad_accum": 1, "min_cell_area": 20, "val_every": 1},
                 "inference": {"points_per_side": 2, "points_batch": 4}},
    "unet": {"channels": [4, 8], "strides": [2], "num_res_units": 0, "threads": 1,
             "train": {"epochs": 2, "batch_size": 1, "patch_size": 32, "steps_per_epoch": 1, "lr": 0.01,
                       "lr_step": 1, "lr_gamma": 0.5}},
    "maunet": {"backbone": "tu-mobilenetv3_small_050", "width": 8, "threads": 1,
               "train": {"epochs": 2, "batch_size": 2, "patch_size": 64, "steps_per_epoch": 1, "lr": 0.01}},
    "mediar": {"encoder": "mit_b0", "decoder_channels": [16, 16, 16, 16, 16], "decoder_pab_channels": 16,
               "crop": 64, "roi": 64, "epochs": 2, "batch_size": 2, "crops_per_epoch": 2, "learning_rate": 0.001,
               "tta": False, "prob_threshold": 0.3, "flow_threshold": 0.0, "niter": 20, "t_max": 2},
    "maskrcnn": {"backbone": "resnet18", "head_width": 16, "patch_size": 64, "batch_size": 1, "epochs": 2,
                 "crops_per_epoch": 1, "anchor_sizes": [8, 16, 32, 64, 128], "roi_batch_size": 16,
                 "rpn_post_nms": 50, "detections_per_image": 20, "warmup_iters": 2, "optimizer": "adamw",
                 "lr": 0.0005},
    "mask2former": {"backbone": "tiny", "hidden_dim": 32, "feature_size": 32, "encoder_layers": 1,
                    "decoder_layers": 2, "num_heads": 2, "dim_feedforward": 32, "encoder_feedforward_dim": 32,
                    "num_queries": 8, "train_num_points": 128, "crop_size": 64, "batch_size": 1, "epochs": 2,
                    "crops_per_epoch": 1, "warmup_iters": 1, "lr": 0.001, "score_threshold": 0.0},
}
NEEDS = {"cellseg1": ("torch", "segment_anything"), "unet": ("torch", "monai"),
         "maunet": ("torch", "monai", "segmentation_models_pytorch", "timm"),
         "mediar": ("torch", "segmentation_models_pytorch", "cellpose"), "maskrcnn": ("torch", "torchvision"),
         "mask2former": ("torch", "transformers")}
#: Methods that validate and keep their best epoch: they get validation images, so the best state is restored too.
VALIDATED = {"cellseg1", "mediar", "maskrcnn", "mask2former"}


class Interrupted(Exception):
    """What the progress bar raises to stop a training between two epochs."""


def stop_after(epochs: int):
    """A progress factory that stops the training when epoch ``epochs + 1`` is about to start (outermost bar)."""
    outer = []

    def factory(iterable, **kwargs):
        if outer:
            return iterable
        outer.append(kwargs)

        def counted():
            for k, item in enumerate(iterable):
                if k == epochs:
                    raise Interrupted
                yield item

        return counted()

    return factory


def _method(name: str):
    for module in NEEDS[name]:
        pytest.importorskip(module)
    cls = get_method(name)
    return cls(config_from_dict(cls.Config, TINY[name]))


def _weights(method) -> dict:
    import torch

    if method.name == "cellseg1":
        from cellbench.methods.adapters.cellseg1.lora import lora_state_dict

        state = lora_state_dict(method.backbone.model)
    else:
        net = {"mediar": "_net", "maskrcnn": "_model", "mask2former": "_model"}.get(method.name, "_network")
        state = getattr(method, net).state_dict()
    return {k: v.detach().cpu().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _same(a: dict, b: dict) -> list[str]:
    import torch

    return sorted(k for k in a if not torch.equal(a[k], b[k])) + sorted(set(a) ^ set(b))


#: The heaviest tiny trainings (about 10 s on a loaded 2-core CPU) run with the slow tests.
SLOW = {"mediar", "maskrcnn"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(TINY)])
def test_stop_and_resume_gives_the_uninterrupted_weights(name, blobs, tmp_path):
    train, valid = blobs["train"][:1], blobs["valid"] if name in VALIDATED else None
    straight = _method(name)
    assert straight.resumable
    h_straight = straight.train(train, valid, seed=3)

    folder = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        _method(name).train(train, valid, seed=3, progress=stop_after(1), checkpoint_dir=folder)
    assert has_checkpoint(folder)
    resumed = _method(name)  # a new object, as a new process would build
    bars = []
    h_resumed = resumed.train(train, valid, seed=3, checkpoint_dir=folder,
                              progress=lambda it, **kw: bars.append(kw) or it)

    assert not _same(_weights(straight), _weights(resumed))
    assert [(e.epoch, e.loss, e.val_score) for e in h_resumed.epochs] == \
        [(e.epoch, e.loss, e.val_score) for e in h_straight.epochs]
    assert h_resumed.best_epoch == h_straight.best_epoch
    assert bars[0]["initial"] == 1 and bars[0]["total"] == 2  # the bar continues at the resumed epoch


def test_checkpoint_with_a_changed_config_or_seed_is_refused(blobs, tmp_path):
    name = "unet"
    folder = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        _method(name).train(blobs["train"][:1], seed=0, progress=stop_after(1), checkpoint_dir=folder)
    cls = get_method(name)
    changed = cls(config_from_dict(cls.Config, {**TINY[name], "train": {**TINY[name]["train"], "lr": 0.02}}))
    with pytest.raises(DataError, match=r"config\.train\.lr: 0\.01 -> 0\.02") as err:
        changed.train(blobs["train"][:1], seed=0, checkpoint_dir=folder)
    assert CHECKPOINT_FILE in str(err.value)
    with pytest.raises(DataError, match=r"seed: 0 -> 1"):
        _method(name).train(blobs["train"][:1], seed=1, checkpoint_dir=folder)
    with pytest.raises(DataError, match=r"train: "):  # other training images
        _method(name).train(blobs["train"][1:], seed=0, checkpoint_dir=folder)


@pytest.mark.parametrize("content", [b"", b"not a zip", None])
def test_damaged_or_foreign_checkpoint_file_is_a_data_error(tmp_path, content):
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(2, 2)
    path = tmp_path / CHECKPOINT_FILE
    if content is None:  # a torch file, but not a cellbench checkpoint
        torch.save({"weights": net.state_dict()}, path)
    else:
        path.write_bytes(content)
    checkpoint = EpochCheckpoint(tmp_path, fingerprint={}, objects={"model": net})
    with pytest.raises(DataError) as err:
        checkpoint.resume()
    assert str(path) in str(err.value)


def test_checkpoint_of_another_network_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    EpochCheckpoint(tmp_path, fingerprint={"a": 1}, objects={"model": torch.nn.Linear(2, 2)},
                    generators={"rng": rng}).save(1, history=[0.5])
    other = EpochCheckpoint(tmp_path, fingerprint={"a": 1}, objects={"model": torch.nn.Linear(3, 2)},
                            generators={"rng": rng})
    with pytest.raises(DataError, match="model state does not fit"):
        other.resume()


def test_random_states_are_restored(tmp_path):
    import random

    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    checkpoint = EpochCheckpoint(tmp_path, fingerprint={}, objects={}, generators={"rng": rng})
    checkpoint.save(2, history=[1.0, 0.5], best=(0.9, 1, {"w": torch.ones(2)}))
    expected = (random.random(), np.random.random(), float(torch.rand(1)), rng.random())
    rng2 = np.random.default_rng(99)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state = EpochCheckpoint(tmp_path, fingerprint={}, objects={}, generators={"rng": rng2}).resume()
    assert (random.random(), np.random.random(), float(torch.rand(1)), rng2.random()) == expected
    assert state.epoch == 2 and state.history == [1.0, 0.5]
    assert state.best[:2] == (0.9, 1) and torch.equal(state.best[2]["w"], torch.ones(2))


def test_without_a_folder_nothing_is_written(tmp_path):
    torch = pytest.importorskip("torch")
    checkpoint = EpochCheckpoint(None, fingerprint={}, objects={"model": torch.nn.Linear(2, 2)})
    assert checkpoint.resume().epoch == 0
    checkpoint.save(1, history=[])
    assert list(checkpoint.epochs(3)) == [0, 1, 2]
    assert list(tmp_path.iterdir()) == []


REPRODUCE = """
import hashlib, sys, torch
sys.path.insert(0, sys.argv[2])
from conftest import blob_sample
from cellbench.methods import config_from_dict, get_method
from cellbench.methods.adapters.cellseg1.lora import lora_state_dict
torch.set_num_threads(int(sys.argv[1]))
cls = get_method("cellseg1")
config = {"backbone": "tiny", "lora_dropout": 0.1,
          "train": {"epochs": 2, "patch_size": 64, "min_patches": 4, "batch_size": 2, "grad_accum": 1,
                    "min_cell_area": 20}}
method = cls(config_from_dict(cls.Config, config))
history = method.train([blob_sample(1)], seed=0)
state = lora_state_dict(method.backbone.model)
print(history.info["torch_threads"], hashlib.sha256(b"".join(v.numpy().tobytes() for v in state.values())).hexdigest())
"""


@pytest.mark.slow  # four processes start torch
def test_cellseg1_training_is_bit_identical_across_processes_at_a_fixed_thread_count():
    """Issue 12: same seed, LoRA dropout on, two torch threads, separate processes (other hash seeds and heap
    layouts): the same LoRA weights. The thread count is recorded, since another count sums in another order."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("segment_anything")
    here = str(Path(__file__).parent)

    def run(threads: int, hash_seed: str) -> list[str]:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", REPRODUCE, str(threads), here], env=env, capture_output=True,
                             text=True, check=True)
        return out.stdout.split()

    assert run(2, "1") == run(2, "2")
    assert run(1, "3")[0] == "1"
