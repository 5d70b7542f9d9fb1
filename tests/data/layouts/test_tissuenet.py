"""TissueNet .npz: X (N, H, W, 2) nuclear + whole-cell images, y (N, H, W, 2) cell + nucleus labels."""

from pathlib import Path

import numpy as np
import pytest

from cellbench.data.layouts import read_dataset, read_tissuenet
from cellbench.errors import DataError

H, W = 12, 16


def arrays(n=2):
    """Sample 0: cells 3 and 7 (area 30, 48), nuclei 1 and 2 (area 6 each) inside them.
    Sample 1: cell 5 (area 12), no nucleus."""
    X = np.random.default_rng(0).random((n, H, W, 2), dtype=np.float32)
    y = np.zeros((n, H, W, 2), np.int32)
    y[0, 1:6, 1:7, 0] = 3
    y[0, 6:12, 8:16, 0] = 7
    y[0, 2:4, 2:5, 1] = 1
    y[0, 8:10, 10:13, 1] = 2
    if n > 1:
        y[1, 0:3, 0:4, 0] = 5
    return X, y


def write(path: Path, X=None, y=None, **extra) -> Path:
    if X is None:
        X, y = arrays()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X=X, y=y, **extra)
    return path


def splits_folder(root: Path) -> Path:
    X, y = arrays()
    write(root / "tissuenet_v1.1_train.npz", X, y)
    write(root / "tissuenet_v1.1_val.npz", X[1:], y[1:])
    write(root / "tissuenet_v1.1_test.npz", np.concatenate([X, X]), np.concatenate([y, y]))
    return root


def test_correct_read(tmp_path):
    path = write(tmp_path / "tissuenet_v1.1_train.npz")
    ds = read_tissuenet(path)
    assert ds.layout == "tissuenet" and ds.root == path and ds.split is None
    assert ds.classes == ("cell", "nucleus")
    assert [s.name for s in ds] == ["tissuenet_v1.1_train_00000", "tissuenet_v1.1_train_00001"]
    s0, s1 = ds.samples
    assert s0.image_path is None and s0.instances.shape == (H, W)
    assert [i.source_id for i in s0.instances] == [3, 7, 1, 2]
    assert s0.instances.class_ids.tolist() == [0, 0, 1, 1]
    assert [i.bbox for i in s0.instances] == [(1, 1, 6, 7), (6, 8, 12, 16), (2, 2, 4, 5), (8, 10, 10, 13)]
    assert s0.instances.areas.tolist() == [30, 48, 6, 6]
    assert [i.source_id for i in s1.instances] == [5]
    assert (s1.instances[0].bbox, s1.instances[0].area) == ((0, 0, 3, 4), 12)
    summary = ds.summary()
    assert summary["n_images"] == 2
    assert summary["n_instances"] == 5
    assert summary["per_class"] == {"cell": 3, "nucleus": 2}
    assert summary["n_overlapping_instances"] == 4  # each nucleus lies in its cell
    assert summary["tasks"] == ["all", "nuclei", "whole-cell"]
    assert ds.meta == {"channels": "dual", "label_channels": ["cell", "nucleus"]}


@pytest.mark.parametrize("task, classes, per_class", [
    ("nuclei", ("nucleus",), {"nucleus": 2}),
    ("whole-cell", ("cell",), {"cell": 3}),
])
def test_tasks(tmp_path, task, classes, per_class):
    ds = read_dataset(write(tmp_path / "t.npz"), "tissuenet", task=task)
    assert ds.task == task and ds.classes == classes
    summary = ds.summary()
    assert summary["per_class"] == per_class
    assert summary["n_overlapping_instances"] == 0
    src = {"nuclei": [1, 2], "whole-cell": [3, 7]}[task]
    assert [i.source_id for i in ds.samples[0].instances] == src
    assert ds.samples[0].instances.class_ids.tolist() == [0, 0]


def test_unknown_task(tmp_path):
    path = write(tmp_path / "t.npz")
    with pytest.raises(DataError, match="layout tissuenet has no task 'soma'; tasks: all, nuclei, whole-cell") as err:
        read_dataset(path, "tissuenet", task="soma")
    assert err.value.path == str(path)


@pytest.mark.parametrize("channels, shape, index", [
    ("dual", (H, W, 2), slice(None)),
    ("nuclear", (H, W), 0),
    ("whole-cell", (H, W), 1),
])
def test_channels_pick_the_image_input(tmp_path, channels, shape, index):
    X, y = arrays()
    ds = read_dataset(write(tmp_path / "t.npz", X, y), "tissuenet", channels=channels)
    assert ds.meta["channels"] == channels
    for n, sample in enumerate(ds):
        image = sample.load_image()
        assert image.shape == shape
        np.testing.assert_array_equal(image, X[n, ..., index])
    assert ds.summary()["n_instances"] == 5  # labels do not depend on the input channels


def test_unknown_channels(tmp_path):
    with pytest.raises(ValueError, match="channels must be nuclear, whole-cell or dual"):
        read_tissuenet(write(tmp_path / "t.npz"), channels="rgb")


def test_label_channels_swap_the_classes(tmp_path):
    ds = read_tissuenet(write(tmp_path / "t.npz"), label_channels=("nucleus", "cell"))
    assert ds.summary()["per_class"] == {"cell": 2, "nucleus": 3}
    assert [ds.classes[i.class_id] for i in ds.samples[0].instances] == ["nucleus", "nucleus", "cell", "cell"]
    with pytest.raises(ValueError, match="label_channels must name 'cell' and 'nucleus'"):
        read_tissuenet(tmp_path / "t.npz", label_channels=("cell", "cell"))


def test_split_picks_the_npz(tmp_path):
    root = splits_folder(tmp_path)
    val = read_dataset(root, "tissuenet", split="val")
    assert val.root == root / "tissuenet_v1.1_val.npz" and val.split == "val"
    assert [s.name for s in val] == ["tissuenet_v1.1_val_00000"]
    assert [s.split for s in val] == ["val"]
    assert val.summary()["per_class"] == {"cell": 1, "nucleus": 0}
    test = read_dataset(root, "tissuenet", split="test")
    assert test.summary()["n_images"] == 4 and test.summary()["n_instances"] == 10
    assert read_dataset(root, "tissuenet", split="train").summary()["n_images"] == 2


def test_several_npz_without_split(tmp_path):
    root = splits_folder(tmp_path)
    with pytest.raises(DataError, match="expected one TissueNet .npz, found: tissuenet_v1.1_test.npz, "
                                        "tissuenet_v1.1_train.npz, tissuenet_v1.1_val.npz") as err:
        read_tissuenet(root)
    assert err.value.path == str(root)


def test_unknown_split(tmp_path):
    root = splits_folder(tmp_path)
    with pytest.raises(DataError, match="expected one TissueNet .npz for split valid, found: none") as err:
        read_dataset(root, "tissuenet", split="valid")
    assert err.value.path == str(root)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_tissuenet(tmp_path / "missing.npz")


def test_integer_valued_float_labels_are_accepted(tmp_path):
    X, y = arrays()
    ds = read_tissuenet(write(tmp_path / "t.npz", X, y.astype(np.float32)))
    assert ds.summary()["per_class"] == {"cell": 3, "nucleus": 2}
    assert [i.source_id for i in ds.samples[0].instances] == [3, 7, 1, 2]


@pytest.mark.parametrize("bad_value", [0.5, np.nan])
def test_float_labels_with_non_integer_values(tmp_path, bad_value):
    X, y = arrays()
    y = y.astype(np.float32)
    y[1, 5, 5, 1] = bad_value
    path = write(tmp_path / "t.npz", X, y)
    with pytest.raises(DataError, match="labels y have float dtype float32 with non-integer values") as err:
        read_tissuenet(path)
    assert err.value.path == str(path)


def test_boolean_labels_are_refused(tmp_path):
    X, y = arrays()
    path = write(tmp_path / "t.npz", X, y > 0)
    with pytest.raises(DataError, match="labels y have non-integer dtype bool") as err:
        read_tissuenet(path)
    assert err.value.path == str(path)


def test_negative_labels_name_the_image_and_channel(tmp_path):
    X, y = arrays()
    y[1, 0, 0, 1] = -4
    path = write(tmp_path / "t.npz", X, y)
    with pytest.raises(DataError, match="negative ids") as err:
        read_tissuenet(path)
    assert err.value.path == f"{path}[y][1, ..., 1]"


@pytest.mark.parametrize("X_shape, y_shape", [
    ((2, H, W, 3), (2, H, W, 2)),
    ((2, H, W, 2), (2, H, W, 1)),
    ((2, H, W, 2), (2, H, W - 1, 2)),
    ((2, H, W, 2), (3, H, W, 2)),
    ((2, H, W), (2, H, W)),
])
def test_wrong_shapes(tmp_path, X_shape, y_shape):
    path = write(tmp_path / "t.npz", np.zeros(X_shape, np.float32), np.zeros(y_shape, np.int32))
    with pytest.raises(DataError, match=r"expected X and y of shape \(N, H, W, 2\)") as err:
        read_tissuenet(path)
    assert err.value.path == str(path)


def test_missing_array(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, X=arrays()[0], labels=arrays()[1])
    with pytest.raises(DataError, match=r"TissueNet file must hold arrays X and y, found \['X', 'labels'\]$") as err:
        read_tissuenet(path)
    assert err.value.path == str(path)
    assert "not a readable" not in str(err.value)


def test_corrupt_npz(tmp_path):
    path = tmp_path / "t.npz"
    path.write_bytes(np.random.default_rng(2).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="not a readable .npz file") as err:
        read_tissuenet(path)
    assert err.value.path == str(path)


def test_per_image_arrays_go_into_sample_meta(tmp_path):
    X, y = arrays()
    path = write(tmp_path / "t.npz", X, y, tissue=np.array(["breast", "lung"]), pixel_size=np.array([0.5, 0.65]),
                 scalar=np.array(3))
    ds = read_tissuenet(path)
    assert [s.meta for s in ds] == [{"tissue": "breast", "pixel_size": 0.5}, {"tissue": "lung", "pixel_size": 0.65}]


def test_object_meta_table_of_tissuenet_v1_1_is_left_out(tmp_path):
    """TissueNet v1.1 files carry 'meta', an object array (header row + one row per image) that needs pickle."""
    X, y = arrays()
    meta = np.array([["filename", "tissue"], ["a.npz", "breast"], ["b.npz", "lung"]], dtype=object)
    ds = read_tissuenet(write(tmp_path / "tissuenet_v1.1_train.npz", X, y, meta=meta))
    assert ds.summary()["per_class"] == {"cell": 3, "nucleus": 2}
    assert [s.meta for s in ds] == [{}, {}]
