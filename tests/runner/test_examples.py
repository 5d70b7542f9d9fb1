"""The shipped experiment files load (methods and configs checked) and expand to the intended grids."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellbench.methods import METHODS, get_method, missing_requirements
from cellbench.runner import expand_grid, load_experiment

EXAMPLES = Path(__file__).parents[2] / "examples"
GLIOMA_PROTOCOL = EXAMPLES / "protocols" / "glioma_c6.yaml"


def _methods_installed(*names):
    for name in names:
        if name not in METHODS or missing_requirements(get_method(name).requires):
            pytest.skip(f"method {name} is not installed")


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_loads(name):
    _methods_installed("watershed", "cellpose", "cellseg1")
    exp = load_experiment(EXAMPLES / name)
    assert expand_grid(exp)


def test_glioma_protocol_grid():
    _methods_installed("watershed", "cellpose", "cellseg1")
    exp = load_experiment(GLIOMA_PROTOCOL)
    entries = expand_grid(exp)
    # 4 tasks x (watershed zero-shot + fine-tuned, cellpose fine-tuned, cyto3 zero-shot, nuclei zero-shot +
    # fine-tuned, cellseg1 fine-tuned, mediar zero-shot + fine-tuned; yolo fine-tuned where cellbench[yolo] is in)
    assert len(entries) == 4 * (9 + ("yolo" not in exp.skipped))
    assert {d.registered for d in exp.datasets} == {"glioma-c6"}
    tests = {e.task: [t.split for t in e.tests] for e in entries}
    assert tests == {"cells": ["test", "gen"], "soma": ["test"], "type-a": ["test"], "type-b": ["test"]}
    ev = exp.evaluation
    assert (ev.boundary_px, ev.ground_truth, ev.flatten) == (2, ("overlap", "flattened"), "priority-last")
    assert {0.5, 0.75, 0.9} <= set(ev.thresholds)


def test_glioma_protocol_runs_on_a_synthetic_set(tmp_path):
    """The protocol file as is, pointed at synthetic data with --data, expands and reads every split."""
    _methods_installed("watershed", "cellpose", "cellseg1")
    from cellbench.data import read_dataset
    from cellbench.data.synth import synth_glioma_c6

    synth_glioma_c6(tmp_path / "g", n_images=4, shape=(200, 260), cells_per_image=6)
    exp = load_experiment(GLIOMA_PROTOCOL, data_paths={"glioma-c6": str(tmp_path / "g")})
    for entry in expand_grid(exp):
        d = entry.dataset
        for split in (d.train, d.valid, *(t.split for t in entry.tests)):
            assert len(read_dataset(d.path, d.layout, split=split, task=entry.task)) == 1
