"""Reading torch files safely: weights only, bad files named, training checkpoints unwrapped."""

from __future__ import annotations

import pickle

import pytest

from cellbench.errors import DataError
from cellbench.methods.torch_file import read_state_dict, read_torch_file

torch = pytest.importorskip("torch")


class Payload:
    """Stands for whatever a pickled (non-weights-only) file would run on load."""


def test_a_state_dict_round_trips_and_a_wrapper_is_unwrapped(tmp_path):
    state = {"w": torch.arange(3.0), "b": torch.zeros(2)}
    torch.save(state, tmp_path / "plain.pt")
    torch.save({"model": state, "optimizer": {"lr": 0.1}}, tmp_path / "wrapped.pt")
    read = read_state_dict(tmp_path / "plain.pt", what="test weights file")
    assert set(read) == {"w", "b"} and torch.equal(read["w"], state["w"])
    unwrapped = read_state_dict(tmp_path / "wrapped.pt", what="test weights file", wrappers=("model_state_dict", "model"))
    assert set(unwrapped) == {"w", "b"}
    with pytest.raises(DataError, match="test weights file: not a state dict of tensors") as info:
        read_state_dict(tmp_path / "wrapped.pt", what="test weights file")
    assert info.value.path == str(tmp_path / "wrapped.pt")


def test_bad_files_are_refused_naming_them(tmp_path):
    with pytest.raises(DataError, match="test weights file not found") as info:
        read_torch_file(tmp_path / "missing.pt", what="test weights file")
    assert info.value.path == str(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a zip")
    with pytest.raises(DataError, match="not a readable torch weights file"):
        read_torch_file(tmp_path / "junk.pt", what="test weights file")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "junk.pt").read_bytes()[:3])
    with pytest.raises(DataError, match="not a readable torch weights file"):
        read_torch_file(tmp_path / "truncated.pt", what="test weights file")
    # a pickled object is never unpickled: weights_only refuses the class
    torch.save({"w": torch.zeros(1), "payload": Payload()}, tmp_path / "pickled.pt")
    with pytest.raises(DataError, match="test checkpoint: not a readable torch weights file") as info:
        read_torch_file(tmp_path / "pickled.pt", what="test checkpoint", hint="; start again")
    assert info.value.path == str(tmp_path / "pickled.pt")
    message = str(info.value)
    assert "pickled Python objects" in message and "Payload" in message and message.endswith("; start again")
    assert "\n" not in message and "weights_only` set to `False`" not in message  # no advice to load it unsafely
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"w": [1.0]}, protocol=2))
    with pytest.raises(DataError, match="not a readable torch weights file|not a state dict of tensors"):
        read_state_dict(tmp_path / "raw.pkl", what="test weights file")


def test_safetensors_files_are_read_by_safetensors_whatever_torch_load_does(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    state = {"w": torch.arange(3.0), "b": torch.zeros(2)}
    save_file(state, tmp_path / "model.safetensors")

    def refuse(*args, **kwargs):  # torch.load before 2026 reads no safetensors file; it is never asked
        raise RuntimeError("Invalid magic number; corrupt file?")

    monkeypatch.setattr(torch, "load", refuse)
    read = read_state_dict(tmp_path / "model.safetensors", what="test weights file", wrappers=("model",))
    assert set(read) == {"w", "b"} and torch.equal(read["w"], state["w"]) and read["w"].device.type == "cpu"
    assert set(read_torch_file(tmp_path / "model.safetensors", what="test weights file",
                               map_location=torch.device("cpu"))) == {"w", "b"}


def test_a_corrupt_safetensors_file_is_refused_naming_it(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.arange(6.0)}, tmp_path / "good.safetensors")
    whole = (tmp_path / "good.safetensors").read_bytes()
    torch.save({"w": torch.zeros(1)}, tmp_path / "torch.pt")  # a torch file under a safetensors name
    for name, data in (("truncated", whole[:-4]), ("empty", b""), ("junk", b"\x00not safetensors"),
                       ("zip", (tmp_path / "torch.pt").read_bytes())):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        refused = r"test weights file: not a readable safetensors file \(.+\); retry$"
        with pytest.raises(DataError, match=refused) as info:
            read_torch_file(path, what="test weights file", hint="; retry")
        assert info.value.path == str(path) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="MEDIAR weights file: not a readable safetensors file") as info:
        read_state_dict(tmp_path / "truncated.safetensors", what="MEDIAR weights file")
    assert info.value.path == str(tmp_path / "truncated.safetensors")
    with pytest.raises(DataError, match="test weights file not found"):
        read_state_dict(tmp_path / "missing.safetensors", what="test weights file")
