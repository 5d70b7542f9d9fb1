"""Cellpose specifics: fine-tuning from a user-given model file, and files that must be refused."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.errors import DataError

pytest.importorskip("cellpose")
torch = pytest.importorskip("torch")

from cellbench.methods.adapters.cellpose import CellposeConfig, CellposeMethod, read_cellpose_weights  # noqa: E402


class Payload:
    """Stands for any pickled object a malicious file could carry."""


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A randomly initialised Cellpose 3 network saved the way Cellpose saves models (diam_mean 20)."""
    from cellpose import models

    torch.manual_seed(123)
    model = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=20.0, mkldnn=False)
    path = tmp_path_factory.mktemp("pretrained") / "my_cyto3_copy"
    model.net.save_model(str(path))
    return path


def test_fine_tuning_starts_from_the_given_file(pretrained, blobs):
    config = CellposeConfig(pretrained_model=str(pretrained), n_epochs=1, bsize=64, batch_size=2, min_train_masks=1)
    method = CellposeMethod(config)
    start = method._new_model(read_cellpose_weights(pretrained))
    saved = read_cellpose_weights(pretrained)
    assert all(torch.equal(v, saved[k]) for k, v in start.net.state_dict().items())
    assert start.diam_mean == 20.0  # read from the file, not from the config

    history = method.train(blobs["train"], seed=0)
    assert history.info["from"] == str(pretrained) and history.info["diam_mean"] == 20.0
    trained = method._model.net.state_dict()
    assert any(not torch.equal(trained[k], saved[k]) for k in saved if k.startswith("downsample"))


def test_missing_pretrained_file_is_an_error_not_a_download(tmp_path, blobs):
    method = CellposeMethod(CellposeConfig(pretrained_model=str(tmp_path / "cyto3"), n_epochs=1))
    with pytest.raises(DataError, match="not found"):
        method.train(blobs["train"])


def test_foreign_files_are_refused(tmp_path, pretrained):
    cp4 = dict(read_cellpose_weights(pretrained), W2=torch.zeros(1))
    torch.save(cp4, tmp_path / "cpsam")
    with pytest.raises(DataError, match="Cellpose 4") as info:
        read_cellpose_weights(tmp_path / "cpsam")
    assert "cpsam" in str(info.value)

    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="not a readable torch weights file"):
        read_cellpose_weights(tmp_path / "junk.pth")

    torch.save({"layer.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="not a Cellpose 3 model file"):
        read_cellpose_weights(tmp_path / "other.pth")

    # arbitrary pickled objects are not executed: weights_only=True refuses them
    torch.save({"output.2.weight": Payload()}, tmp_path / "pickle.pth")
    with pytest.raises(DataError, match="not a readable torch weights file"):
        read_cellpose_weights(tmp_path / "pickle.pth")


def test_training_without_enough_objects_says_what_to_change(blobs):
    method = CellposeMethod(CellposeConfig(n_epochs=1, min_train_masks=50))
    with pytest.raises(DataError, match="min_train_masks"):
        method.train(blobs["train"])


def test_scores_are_mean_cell_probability(blobs):
    method = CellposeMethod(CellposeConfig(n_epochs=1, bsize=64, batch_size=2, min_train_masks=1, diam_mean=12.0,
                                           cellprob_threshold=-6.0, flow_threshold=0.0))
    method.train(blobs["train"], seed=0)
    found = method.predict(blobs["test"][0].load_image())
    scores = found.scores
    assert scores is None or (np.all(scores >= 0) and np.all(scores <= 1))


def test_training_flows_are_train_segs_own_computed_once_and_handed_out_as_copies():
    """A run trains the same images once per seed: the flows train_seg would compute each time are computed once
    and equal Cellpose's own (labels renumbered, cell, flow y, flow x), so every seed trains exactly as before."""
    from cellpose import dynamics

    from cellbench.methods.adapters import cellpose as adapter

    labels = np.zeros((40, 50), np.int32)
    labels[5:15, 5:18], labels[20:34, 25:40], labels[22:30, 5:12] = 7, 3, 9
    device = torch.device("cpu")
    first = adapter.training_flows([labels], device)[0]
    own = dynamics.labels_to_flows([labels.copy()], device=device)[0]
    assert first.shape == (4, 40, 50) and np.array_equal(first, own)
    assert set(np.unique(first[0])) == {0, 1, 2, 3}  # renumbered as train_seg does
    first[2] += 1  # what a training does to its copy does not reach the next training
    again = adapter.training_flows([labels], device)[0]
    assert np.array_equal(again, own) and again is not first
    assert len([k for k in adapter._FLOWS if k[1] == labels.shape]) == 1
    assert np.array_equal(dynamics.labels_to_flows([again], device=device)[0], own)  # train_seg takes them as they are
