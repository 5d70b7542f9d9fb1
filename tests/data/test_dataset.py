import numpy as np
import pytest

from cellbench.data import Dataset, Sample, Task
from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet

CLASSES = ("cell_type_a", "cell_type_b", "soma")
TASKS = {
    "cells": Task("cells", {"cell_type_a": "cell", "cell_type_b": "cell"}),
    "type-a": Task("type-a", {"cell_type_a": "cell_type_a"}),
    "nuclei": Task("nuclei", {"nucleus": "nucleus"}),
}


def _sq(y, x, n, class_id):
    return Instance(np.ones((n, n), bool), (y, x, y + n, x + n), class_id=class_id)


@pytest.fixture
def dataset():
    one = InstanceSet((10, 10), (_sq(0, 0, 4, 0), _sq(1, 1, 2, 2), _sq(6, 6, 3, 1)), classes=CLASSES)
    two = InstanceSet((10, 10), (_sq(0, 0, 2, 1), _sq(5, 5, 2, 1)), classes=CLASSES)
    samples = (Sample("a", one, split="train", array=np.zeros((10, 10))), Sample("b", two, split="gen"))
    return Dataset("test", root=__import__("pathlib").Path("."), samples=samples, classes=CLASSES, tasks=TASKS)


def test_summary_counts(dataset):
    s = dataset.summary()
    assert s["n_images"] == 2
    assert s["n_instances"] == 5
    assert s["per_class"] == {"cell_type_a": 1, "cell_type_b": 3, "soma": 1}
    assert s["n_overlapping_instances"] == 2  # the soma inside the type A cell, both of them
    assert s["per_split"] == {"train": {"n_images": 1, "n_instances": 3}, "gen": {"n_images": 1, "n_instances": 2}}
    assert s["tasks"] == ["all", "cells", "type-a", "nuclei"]


def test_task_merges_and_drops_classes(dataset):
    cells = dataset.with_task("cells")
    assert cells.task == "cells" and cells.classes == ("cell",)
    assert cells.summary()["per_class"] == {"cell": 4}
    assert cells.summary()["n_overlapping_instances"] == 0
    assert dataset.with_task("type-a").summary()["per_class"] == {"cell_type_a": 1}
    assert dataset.with_task("all") is dataset


def test_unknown_task_and_task_without_its_classes(dataset):
    with pytest.raises(DataError, match="no task 'membrane'; tasks: all, cells, type-a, nuclei"):
        dataset.with_task("membrane")
    with pytest.raises(DataError, match=r"needs classes \['nucleus'\]"):
        dataset.with_task("nuclei")


def test_sample_image_from_memory_or_error(dataset):
    assert dataset.samples[0].load_image().shape == (10, 10)
    with pytest.raises(DataError, match="has no image"):
        dataset.samples[1].load_image()
