"""Label TIFF export: exact pixels per flatten policy, and the policy recorded in the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cellbench.data.dataset import Dataset, Sample
from cellbench.data.export import MANIFEST, read_label_tiff_metadata, write_dataset, write_label_tiff
from cellbench.instances import (
    Instance,
    InstanceSet,
    NearestCentroidFlatten,
    PriorityFlatten,
    flatten,
    policy_from_name,
)


def _row(x0: int, x1: int) -> Instance:
    """A one-row instance covering columns x0..x1-1 of row 0."""
    return Instance(np.ones((1, x1 - x0), bool), (0, x0, 1, x1))


@pytest.fixture
def overlap() -> InstanceSet:
    """A: columns 0-4 (centroid x 2), B: columns 2-7 (centroid x 4.5); they share columns 2, 3, 4."""
    return InstanceSet((1, 8), (_row(0, 5), _row(2, 8)))


@pytest.fixture
def covered() -> InstanceSet:
    """A: columns 0-5 (6 px); C: columns 3-6 (4 px), 3 of its 4 pixels (75 %) under A."""
    return InstanceSet((1, 7), (_row(0, 6), _row(3, 7)))


EXPECTED = {
    "priority-first": [[1, 1, 1, 1, 1, 2, 2, 2]],
    "priority-last": [[1, 1, 2, 2, 2, 2, 2, 2]],
    # column 2: A at distance 0, B at 2.5; column 3: A 1, B 1.5; column 4: A 2, B 0.5
    "nearest-centroid": [[1, 1, 1, 1, 2, 2, 2, 2]],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_policies_give_exact_labels(overlap, name):
    flat = flatten(overlap, policy_from_name(name))
    assert flat.labels.tolist() == EXPECTED[name]
    assert flat.policy == name
    assert flat.lost == ()


def test_shared_pixel_of_two_1x2_instances():
    a = Instance(np.ones((1, 2), bool), (0, 0, 1, 2))
    b = Instance(np.ones((1, 2), bool), (0, 1, 1, 3))
    s = InstanceSet((1, 3), (a, b))
    assert flatten(s, PriorityFlatten("first")).labels.tolist() == [[1, 1, 2]]
    assert flatten(s, PriorityFlatten("last")).labels.tolist() == [[1, 2, 2]]


def test_nearest_centroid_drops_instance_75_percent_covered(covered):
    flat = flatten(covered, NearestCentroidFlatten())
    assert flat.labels.tolist() == [[1, 1, 1, 1, 1, 1, 0]]
    assert flat.lost == (1,)
    assert flat.metadata()["lost_instances"] == [1]
    # the priority policies keep both
    assert flatten(covered, PriorityFlatten("first")).labels.tolist() == [[1, 1, 1, 1, 1, 1, 2]]
    assert flatten(covered, PriorityFlatten("last")).labels.tolist() == [[1, 1, 1, 2, 2, 2, 2]]


def test_nearest_centroid_keeps_instance_below_threshold():
    # C: columns 3-7, 3 of 5 pixels (60 %) shared: kept; shared columns go to the nearest centroid
    s = InstanceSet((1, 8), (_row(0, 6), _row(3, 8)))
    flat = flatten(s, NearestCentroidFlatten())
    # A centroid 2.5, C centroid 5: column 3 -> A (0.5 vs 2), 4 -> C (1.5 vs 1), 5 -> C
    assert flat.labels.tolist() == [[1, 1, 1, 1, 2, 2, 2, 2]]
    assert flat.lost == ()


def test_priority_hides_fully_covered_instance_and_reports_it():
    s = InstanceSet((1, 4), (_row(1, 3), _row(0, 4)))  # the first lies inside the second
    flat = flatten(s, PriorityFlatten("last"))
    assert flat.labels.tolist() == [[2, 2, 2, 2]]
    assert flat.lost == (0,)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_label_tiff_pixels_and_metadata(tmp_path, overlap, name):
    flat = flatten(overlap, policy_from_name(name))
    path = tmp_path / "x.tif"
    write_label_tiff(path, flat, extra={"image": "x"})
    pixels = tifffile.imread(path)
    assert pixels.dtype == np.uint16
    assert pixels.tolist() == EXPECTED[name]
    meta = read_label_tiff_metadata(path)
    assert meta["flatten_policy"] == name
    assert meta["flatten_params"] == policy_from_name(name).params()
    assert meta["lost_instances"] == []
    assert meta["image"] == "x"
    with tifffile.TiffFile(path) as tif:
        description = json.loads(tif.pages[0].description)
    assert description["cellbench"]["flatten_policy"] == name


def test_label_tiff_records_lost_instances(tmp_path, covered):
    path = tmp_path / "c.tif"
    write_label_tiff(path, flatten(covered, NearestCentroidFlatten()))
    assert tifffile.imread(path).tolist() == [[1, 1, 1, 1, 1, 1, 0]]
    meta = read_label_tiff_metadata(path)
    assert meta["flatten_policy"] == "nearest-centroid"
    assert meta["flatten_params"] == {"drop_covered": 0.75}
    assert meta["lost_instances"] == [1]


def test_metadata_of_foreign_tiff_is_none(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((3, 3), np.uint16))
    assert read_label_tiff_metadata(path) is None
    path2 = tmp_path / "described.tif"
    tifffile.imwrite(path2, np.zeros((3, 3), np.uint16), description="hello", metadata=None)
    assert read_label_tiff_metadata(path2) is None


def _dataset(root, instances: InstanceSet, name: str = "x") -> Dataset:
    return Dataset(layout="hand", root=root, samples=(Sample(name, instances),), classes=instances.classes)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_write_dataset_labels_per_policy(tmp_path, overlap, name):
    out = tmp_path / "out"
    manifest = write_dataset(_dataset(tmp_path, overlap), out, "labels", policy=policy_from_name(name))
    assert tifffile.imread(out / "labels" / "x.tif").tolist() == EXPECTED[name]
    assert read_label_tiff_metadata(out / "labels" / "x.tif")["flatten_policy"] == name
    on_disk = json.loads((out / MANIFEST).read_text())
    assert on_disk == manifest
    assert on_disk["format"] == "labels"
    assert on_disk["flatten"]["flatten_policy"] == name
    assert on_disk["flatten"]["flatten_params"] == policy_from_name(name).params()
    assert on_disk["files"] == ["labels/x.tif"]
    assert on_disk["n_images"] == 1
    assert on_disk["n_instances"] == 2


def test_write_dataset_labels_default_policy_is_priority_last(tmp_path, overlap):
    out = tmp_path / "out"
    manifest = write_dataset(_dataset(tmp_path, overlap), out, "labels")
    assert manifest["flatten"]["flatten_policy"] == "priority-last"
    assert tifffile.imread(out / "labels" / "x.tif").tolist() == EXPECTED["priority-last"]
    assert read_label_tiff_metadata(out / "labels" / "x.tif")["flatten_policy"] == "priority-last"


def test_write_dataset_labels_counts_survivors_only(tmp_path, covered):
    out = tmp_path / "out"
    manifest = write_dataset(_dataset(tmp_path, covered), out, "labels", policy=NearestCentroidFlatten())
    assert manifest["n_instances"] == 1
    assert tifffile.imread(out / "labels" / "x.tif").tolist() == [[1, 1, 1, 1, 1, 1, 0]]
    assert read_label_tiff_metadata(out / "labels" / "x.tif")["lost_instances"] == [1]


def test_label_tiff_of_empty_image(tmp_path):
    out = tmp_path / "out"
    write_dataset(_dataset(tmp_path, InstanceSet((4, 5))), out, "labels")
    pixels = tifffile.imread(out / "labels" / "x.tif")
    assert pixels.shape == (4, 5)
    assert not pixels.any()
