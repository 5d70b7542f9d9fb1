"""bioimage.io export of a Cellpose model directory: the network inside, and the package that
bioimage.io.core validates and tests without network access."""

from __future__ import annotations

import hashlib
import io
import socket
import zipfile

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("cellpose")


def test_the_package_network_is_cellposes():
    """CellposeFlows at rescale 1 gives Cellpose's own output map (its style vector written trace-friendly)."""
    from cellpose.resnet_torch import CPnet

    from cellbench.gallery.bioimageio_cellpose_arch import CellposeFlows

    torch.manual_seed(0)
    reference = CPnet([2, 32, 64, 128, 256], 3, 3, mkldnn=False, diam_mean=17.0).eval()
    ours = CellposeFlows(diam_mean=17.0, rescale=1.0, in_channels=1).eval()
    ours.net.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(1, 1, 48, 64)
    with torch.no_grad():
        expected = reference(torch.cat([x, torch.zeros_like(x)], dim=1))[0]
        assert torch.allclose(ours(x), expected, atol=1e-5)


@pytest.fixture
def no_network(monkeypatch):
    """Any connection to a host other than this machine fails (and is recorded)."""
    tried = []
    original = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
            tried.append(address)
            raise OSError(f"network disabled in this test: {address}")
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return tried


@pytest.mark.slow
# bioimageio.core 0.11 loads TorchScript with torch.jit.load (deprecated by torch), and bioimageio.spec 0.5.12
# leaves the package files it hashes open: their warnings are theirs, not cellbench's.
@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.:FutureWarning", "ignore::ResourceWarning",
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_exported_package_validates_and_passes_bioimageio_core_tests_offline(tmp_path, monkeypatch, no_network):
    from gallery_helpers import write_tiny_dsb

    from cellbench.cli.main import main

    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path / "bioimageio-cache"))
    data = write_tiny_dsb(tmp_path / "data")
    config = tmp_path / "cp.yaml"
    config.write_text(yaml.safe_dump({"n_epochs": 1, "bsize": 64, "batch_size": 2, "min_train_masks": 1,
                                      "diam_mean": 12.0, "cellprob_threshold": -6.0, "flow_threshold": 0.0}))
    assert main(["train", "cellpose", "--data", str(data), "--layout", "dsb", "--split", "train", "--config",
                 str(config), "--out", str(tmp_path / "model")]) == 0
    package = tmp_path / "cellpose.zip"
    assert main(["export", "bioimageio", str(tmp_path / "model"), "--out", str(package), "--licence", "MIT"]) == 0

    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        files = {n: z.read(n) for n in names}
    assert {"rdf.yaml", "test_input.npy", "test_output.npy", "cover.png", "documentation.md", "model.json",
            "cellpose_flows.torchscript.pt", "cellpose_flows_state_dict.pt", "bioimageio_cellpose_arch.py"} <= names
    assert rdf["format_version"].startswith("0.5") and rdf["license"] == "MIT" and rdf["cite"][0]["doi"]
    post = rdf["outputs"][0]["postprocessing"][0]
    assert post["id"] == "cellpose_flow_dynamics" and post["kwargs"]["cellprob_threshold"] == -6.0
    for entry in rdf["weights"].values():
        assert hashlib.sha256(files[entry["source"]]).hexdigest() == entry["sha256"]
    test_out = np.load(io.BytesIO(files["test_output.npy"]))
    assert test_out.dtype == np.uint16 and test_out.shape == (1, 1, 64, 64)

    from bioimageio.core import test_description
    from bioimageio.spec import load_description

    descr = load_description(package)
    assert descr.validation_summary.status == "valid-format", descr.validation_summary.display()
    summary = test_description(package)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    names = [d.name for d in summary.details]
    assert any("torchscript" in n for n in names) and any("pytorch_state_dict" in n for n in names)
    assert no_network == []

    # the TorchScript network takes sizes it was not traced at, and equals the state-dict one there
    from cellbench.gallery.bioimageio_cellpose_arch import CellposeFlows

    scripted = torch.jit.load(io.BytesIO(files["cellpose_flows.torchscript.pt"]))
    eager = CellposeFlows(**rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]).eval()
    eager.load_state_dict(torch.load(io.BytesIO(files["cellpose_flows_state_dict.pt"]), weights_only=True))
    with torch.no_grad():
        for shape in ((1, 1, 70, 90), (2, 1, 128, 64)):
            x = torch.rand(*shape)
            assert scripted(x).shape == (shape[0], 3, *shape[2:])
            assert torch.allclose(scripted(x), eager(x), atol=1e-4)
