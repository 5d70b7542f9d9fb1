"""A grid entry whose training is killed between two epochs continues from its checkpoint on the next run."""

from __future__ import annotations

import json

from cellbench.methods.checkpoint import CHECKPOINT_FILE
from cellbench.runner import PredictionCache, expand_grid, experiment_from_dict
from cellbench.runner.entry import run_entry


def _experiment(data, **config) -> dict:
    return {
        "name": "resume",
        "seeds": [0],
        "datasets": {"tiny": {"layout": "dsb", "path": str(data), "train": "train", "test": ["test"]}},
        "methods": {"epochs": {"method": "resumable_fakes:EpochThresholdMethod", "config": config}},
        "regimes": {"all": {"train_images": "all"}},
        "evaluation": {"thresholds": [0.5], "ground_truth": ["overlap"]},
    }


def test_a_killed_training_resumes_from_its_last_epoch(tmp_path, tiny_data):
    log, stop = tmp_path / "epochs.log", tmp_path / "stop"
    (entry,) = expand_grid(experiment_from_dict(_experiment(tiny_data, log=str(log), stop_file=str(stop))))
    (reference,) = expand_grid(experiment_from_dict(_experiment(tiny_data)))
    cache = PredictionCache(tmp_path / "cache", entry.key)
    checkpoint = cache.folder / "model.checkpoint" / CHECKPOINT_FILE

    stop.touch()
    killed = run_entry(entry, cache_root=tmp_path / "cache")
    assert killed.status == "failed" and "Killed" in killed.error
    assert not cache.has_model()
    assert json.loads(checkpoint.read_text())["epoch"] == 2  # epochs 0 and 1 finished, kept in the entry's folder

    stop.unlink()
    done = run_entry(entry, cache_root=tmp_path / "cache")
    assert done.status == "done", done.error
    epochs = [line for line in log.read_text().splitlines() if line.startswith("epoch")]
    assert epochs == ["epoch 0", "epoch 1", "epoch 2", "epoch 3"]  # none trained twice
    assert not checkpoint.parent.exists()  # gone once the model directory is written

    straight = run_entry(reference, cache_root=tmp_path / "straight")
    assert [e["loss"] for e in done.train["history"]["epochs"]] == \
        [e["loss"] for e in straight.train["history"]["epochs"]]
    assert done.evaluations[0].result["pooled"] == straight.evaluations[0].result["pooled"]
    model = json.loads((cache.model_dir / "model.json").read_text())
    assert model["seed"] == 0 and set(model["extra"]["runner"]) == {"entry", "entry_key", "train_wall_s"}
