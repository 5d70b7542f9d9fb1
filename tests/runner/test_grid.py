"""Grid expansion: which grid entries exist, and their keys."""

from __future__ import annotations

from runner_helpers import experiment_dict

from cellbench.runner import expand_grid, experiment_from_dict


def test_grid_is_datasets_tasks_methods_regimes_seeds(tiny_data):
    d = experiment_dict(tiny_data)
    d["seeds"] = [0, 1]
    entries = expand_grid(experiment_from_dict(d))
    # zero-shot trains nothing, so the seed cannot matter: one entry; "one" and "all" train with each seed
    assert len(entries) == 3 * (1 + 2 + 2)
    assert [e.label for e in entries[:5]] == ["tiny/all/low/zero-shot/seed0", "tiny/all/low/one/seed0",
                                              "tiny/all/low/one/seed1", "tiny/all/low/all/seed0",
                                              "tiny/all/low/all/seed1"]
    assert len({e.key for e in entries}) == len(entries)


def test_a_method_without_random_numbers_trains_once_on_all_images(tiny_data):
    d = experiment_dict(tiny_data)
    d["seeds"] = [3, 1, 2]
    d["methods"]["low"]["method"] = "fake_methods:UnseededThresholdMethod"
    labels = [e.label for e in expand_grid(experiment_from_dict(d)) if e.method.name == "low"]
    # the seed still draws the one training image of regime "one"
    assert labels == ["tiny/all/low/zero-shot/seed3", "tiny/all/low/one/seed3", "tiny/all/low/one/seed1",
                      "tiny/all/low/one/seed2", "tiny/all/low/all/seed3"]


def test_method_regimes_and_test_tasks_restrict_the_grid(tiny_data):
    d = experiment_dict(tiny_data)
    d["methods"]["broken"]["regimes"] = ["zero-shot"]
    d["datasets"]["tiny"]["tasks"] = ["all", "other"]
    d["datasets"]["tiny"]["test"] = ["test", {"split": "train", "tasks": ["other"]}]
    entries = expand_grid(experiment_from_dict(d))
    assert [e.label for e in entries if e.method.name == "broken"] == [
        "tiny/all/broken/zero-shot/seed0", "tiny/other/broken/zero-shot/seed0"]
    by_task = {e.task: [t.split for t in e.tests] for e in entries}
    assert by_task == {"all": ["test"], "other": ["test", "train"]}


def test_keys_are_stable_and_change_with_the_config(tiny_data):
    a = expand_grid(experiment_from_dict(experiment_dict(tiny_data)))
    b = expand_grid(experiment_from_dict(experiment_dict(tiny_data)))
    assert [c.key for c in a] == [c.key for c in b]
    d = experiment_dict(tiny_data)
    d["methods"]["low"]["config"]["threshold"] = 61
    c = expand_grid(experiment_from_dict(d))
    assert a[0].key != c[0].key and a[3].key == c[3].key
