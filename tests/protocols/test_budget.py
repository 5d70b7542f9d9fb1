"""The cpu budget: first seed, each method's cpu preset (schedule only over pretrained weights), first N images,
every change listed; the paper budget changes nothing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

import cellbench.runner.experiment as experiment_module
from cellbench.errors import DataError
from cellbench.methods.adapters.watershed import WatershedMethod
from cellbench.protocols import apply_budget
from cellbench.runner.experiment import DatasetSpec, Experiment, MethodSpec, Regime


@dataclass(frozen=True)
class Train:
    epochs: int = 300
    patch_size: int = 256


@dataclass(frozen=True)
class FakeConfig:
    pretrained: str | None = None
    encoder: str = "big"
    n_epochs: int = 100
    train: Train = field(default_factory=Train)


class FakeMethod:
    Config = FakeConfig
    presets = {"cpu": {"encoder": "small", "n_epochs": 5, "train": {"epochs": 8, "patch_size": 128}}}


def _resolve(name):
    return WatershedMethod if name == "watershed" else FakeMethod


def _experiment(**kwargs) -> Experiment:
    return Experiment(
        name="x",
        datasets=(DatasetSpec("a", "dsb", "/a", train="train"), DatasetSpec("b", "dsb", "/b", options={"first_images": 2})),
        methods=(MethodSpec("scratch", "fake"), MethodSpec("tuned", "fake", config={"pretrained": "w"}),
                 MethodSpec("zs", "fake", regimes=("zero-shot",)), MethodSpec("ws", "watershed")),
        regimes=(Regime("zero-shot", 0), Regime("five", 5), Regime("all", None)),
        seeds=(3, 1, 2), **kwargs)


@pytest.fixture(autouse=True)
def _fake_methods(monkeypatch):
    monkeypatch.setattr(experiment_module, "resolve_method", _resolve)


def test_paper_changes_nothing():
    exp = _experiment()
    assert apply_budget(exp, "paper") == (exp, ())


def test_cpu_lists_every_change():
    exp, changes = apply_budget(_experiment(), "cpu", images=4)
    assert exp.seeds == (3,)
    methods = {m.name: m for m in exp.methods}
    assert methods["scratch"].config == {"encoder": "small", "n_epochs": 5, "train": {"epochs": 8, "patch_size": 128}}
    # over pretrained weights only the schedule: epochs, not the encoder or the patch size
    assert methods["tuned"].config == {"pretrained": "w", "n_epochs": 5, "train": {"epochs": 8}}
    assert methods["zs"].config == {} and methods["ws"].config == {}  # zero-shot only; no cpu preset
    assert [d.options for d in exp.datasets] == [{"first_images": 5}, {"first_images": 2}]  # 5: regime "five"
    lines = [c.text() for c in changes]
    assert lines[0] == "seeds: seeds [3, 1, 2] -> [3] (the first seed only)"
    assert "method scratch: config.encoder big -> small (fake's cpu preset)" in lines
    assert "method scratch: config.train.patch_size 256 -> 128 (fake's cpu preset)" in lines
    assert ("method tuned: config.train.epochs 300 -> 8 (fake's cpu preset, schedule settings only: the protocol "
            "starts from pretrained w)") in lines
    assert not any(line.startswith(("method tuned: config.encoder", "method zs", "method ws")) for line in lines)
    assert "dataset a: options.first_images unset -> 5 (every split cut to its first 5 images in name order)" in lines
    assert not any(line.startswith("dataset b") for line in lines)  # already cut to 2
    assert lines[-1] == "regime all: train_images all -> all of the first 5 (the training split is cut)"
    assert exp.fingerprint != _experiment().fingerprint


def test_unknown_budget():
    with pytest.raises(DataError, match="budget must be one of paper, cpu"):
        apply_budget(_experiment(), "gpu")


def test_a_presets_tiling_becomes_the_methods_tiling_not_a_config_field(monkeypatch):
    """SAM's cpu preset holds its tiles as tiling (the model's tiling): the budget sets the method's tiling
    from it, unless the protocol names one."""
    class Tiled(FakeMethod):
        presets = {"cpu": {"n_epochs": 5, "tiling": {"tile": 128, "overlap": 64}}}

    monkeypatch.setattr(experiment_module, "resolve_method", lambda name: Tiled)
    exp = dataclasses.replace(_experiment(), methods=(MethodSpec("sam", "fake"),
                                                      MethodSpec("own", "fake", tiling={"tile": 96, "overlap": 8})))
    budgeted, changes = apply_budget(exp, "cpu")
    sam, own = budgeted.methods
    assert sam.config == own.config == {"n_epochs": 5}
    assert sam.tiling == {"tile": 128, "overlap": 64} and own.tiling == {"tile": 96, "overlap": 8}
    assert "method sam: tiling unset -> {'tile': 128, 'overlap': 64} (fake's cpu preset)" in [c.text() for c in changes]


def test_an_encoder_or_backbone_the_protocol_names_is_what_the_row_measures_and_stays():
    """The 18-methods protocol's Swin-S row is Mask R-CNN with backbone swin_s: the cpu preset shrinks its
    schedule but does not swap the backbone its own preset names."""
    exp = dataclasses.replace(_experiment(), methods=(MethodSpec("named", "fake", config={"encoder": "swin"}),))
    budgeted, changes = apply_budget(exp, "cpu")
    assert budgeted.methods[0].config == {"encoder": "swin", "n_epochs": 5,
                                          "train": {"epochs": 8, "patch_size": 128}}
    assert not any("config.encoder" in c.text() for c in changes)
