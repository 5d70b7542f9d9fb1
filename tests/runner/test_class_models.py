"""Tasks with two classes: a classifying method trains once, a single-class one once per class; both are
scored per class and with a class confusion table, side by side."""

from __future__ import annotations

import pytest

from cellbench.data.synth import synth_glioma_c6
from cellbench.runner import PredictionCache, ResultStore, expand_grid, experiment_from_dict, run_experiment


@pytest.fixture(scope="module")
def glioma(tmp_path_factory):
    root = tmp_path_factory.mktemp("glioma")
    synth_glioma_c6(root, n_images=4, shape=(256, 320), cells_per_image=20, seed=1, overwrite=True)
    return root


def test_single_class_methods_train_per_class_and_classifiers_once(tmp_path, glioma):
    log = tmp_path / "calls.log"
    exp = experiment_from_dict({
        "name": "types",
        "datasets": {"g": {"layout": "glioma-c6", "path": str(glioma), "train": "train", "test": ["test"],
                           "tasks": ["types"]}},
        "methods": {"single": {"method": "fake_methods:ThresholdMethod", "config": {"log": str(log)}},
                    "classifier": {"method": "class_fakes:SizeClassMethod", "config": {"log": str(log)}}},
        "regimes": {"all": {"train_images": "all"}},
        "evaluation": {"thresholds": [0.5], "ground_truth": ["overlap"], "per_class": True},
    })
    summary = run_experiment(exp, tmp_path / "run")
    assert summary.n_failed == 0, summary.errors
    ends = [line.split()[-1] for line in log.read_text().splitlines() if line.startswith("train-end")]
    assert len(ends) == 3  # two single-class models, one classifier

    single, classifier = expand_grid(exp)
    cache = PredictionCache(tmp_path / "run" / "cache", single.key)
    assert (cache.folder / "class0" / "model" / "model.json").is_file()
    assert (cache.folder / "class1" / "model" / "model.json").is_file()
    with ResultStore.open(tmp_path / "run" / "results.sqlite") as store:
        evaluations = store.evaluations(1)
        trainings = store.trainings(1)
    assert trainings[single.key].history["per_class"].keys() == {"cell_type_a", "cell_type_b"}
    for entry in (single, classifier):
        result = evaluations[entry.key][0].result
        assert set(result["per_class"]) == {"cell_type_a", "cell_type_b", "macro"}
        table = result["class_confusion"]["0.5"]
        assert set(table["matched"]) == {"cell_type_a", "cell_type_b"}
        assert set(table["matched"]["cell_type_a"]) == {"cell_type_a", "cell_type_b"}  # predictions are classified
        pooled = result["pooled"]["0.5"]
        # class-agnostic matches = the table's pairs; unmatched GT / predictions = missed / spurious
        assert sum(sum(row.values()) for row in table["matched"].values()) == pooled["tp"]
        assert sum(table["missed"].values()) == pooled["fn"] and sum(table["spurious"].values()) == pooled["fp"]


def test_report_shows_both_kinds_of_method_per_class(tmp_path, glioma):
    from cellbench.report.build import build_tables
    from cellbench.report.results import load_results

    exp = experiment_from_dict({
        "name": "types",
        "datasets": {"g": {"layout": "glioma-c6", "path": str(glioma), "train": "train", "test": ["test"],
                           "tasks": ["types"]}},
        "methods": {"single": {"method": "fake_methods:ThresholdMethod"},
                    "classifier": {"method": "class_fakes:SizeClassMethod"}},
        "regimes": {"all": {"train_images": "all"}},
        "evaluation": {"thresholds": [0.5], "ground_truth": ["overlap"], "per_class": True},
    })
    run_experiment(exp, tmp_path / "run")
    per_class, confusion = build_tables(load_results(tmp_path / "run"))["Classes: per-class scores and class confusion"]
    models = {(row[4], row[5]) for row in per_class.rows}
    assert models == {("single (all)", "one per class"), ("classifier (all)", "one")}
    assert {row[6] for row in per_class.rows} == {"cell_type_a", "cell_type_b", "macro"}
    assert {row[6] for row in confusion.rows} >= {"cell_type_a", "cell_type_b", "(missed)"}
