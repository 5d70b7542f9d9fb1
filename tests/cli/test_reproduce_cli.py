"""`cellbench reproduce NAME --budget cpu` end to end on a stand-in DSB2018 archive served from 127.0.0.1: the
changes printed, the data downloaded through the verified downloader, the run resumable, the report's 'Published vs
this run' pairing each published value with this run's score."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from cellbench.analysis import metric_value
from cellbench.cli.main import main
from cellbench.data.registry import DATASETS, DatasetFile
from cellbench.remote import RemoteFile
from cellbench.report import load_results

sys.path.insert(0, str(Path(__file__).parents[1] / "remote"))
from local_server import serve  # noqa: E402

PROTOCOL = {
    "name": "tiny-protocol", "seeds": [0, 1],
    "datasets": {"dsb": {"registered": "dsb2018", "train": "train", "test": ["test"]}},
    "methods": {"watershed": {"method": "watershed"}},
    "regimes": {"zero-shot": {"train_images": 0}, "fine-tuned": {"train_images": "all"}},
    "evaluation": {"thresholds": [0.5, 0.75]},
}
PUBLISHED = {
    "paper": "tiny_paper", "protocol": "tiny",
    "tables": [{"source": "Table 1", "unit": "percent",
                "entry": {"dataset": "dsb", "task": "all", "split": "test", "method": "watershed"},
                "columns": ["f1@0.5", "ap_dsb@0.75", "mean_f1@0.5"],
                "rows": [{"row": "Watershed, tuned", "entry": {"regime": "fine-tuned"}, "values": [80.0, 40.0, 75.0]},
                         {"row": "Watershed, as is", "entry": {"regime": "zero-shot"}, "values": [50.0, None, 45.0]}]}],
}


def _standin_dsb(root: Path) -> Path:
    """dsb2018.zip as StarDist ships it (dsb2018/{train,test}/{images,masks}/*.tif): 3 train, 4 test images of disks."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    src = root / "src"
    for split, names in (("train", "abc"), ("test", "defg")):
        for k, name in enumerate(names):
            labels = np.zeros((64, 64), np.uint16)
            for j, (cy, cx) in enumerate([(14, 12), (14, 34), (34, 12), (34, 50), (52, 30)][: 3 + k % 3]):
                labels[(yy - cy) ** 2 + (xx - cx - k % 3) ** 2 <= 36] = j + 1
            image = ((labels > 0) * 180 + rng.integers(0, 30, labels.shape)).astype(np.uint8)
            for sub, arr in (("images", image), ("masks", labels)):
                (src / "dsb2018" / split / sub).mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(src / "dsb2018" / split / sub / f"{name}.tif", arr)
    archive = root / "served" / "dsb2018.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    return archive


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("CELLBENCH_MIRROR", "CELLBENCH_MODEL_MIRROR", "CELLBENCH_PROTOCOLS"):
        monkeypatch.delenv(name, raising=False)
    protocols = tmp_path / "protocols"
    protocols.mkdir()
    (protocols / "tiny.yaml").write_text(yaml.safe_dump(PROTOCOL))
    (protocols / "tiny.published.yaml").write_text(yaml.safe_dump(PUBLISHED))
    archive = _standin_dsb(tmp_path)
    with serve(archive.parent) as srv:
        files = (DatasetFile(RemoteFile("dsb2018.zip", f"{srv.url()}/dsb2018.zip",
                                        sha256=hashlib.sha256(archive.read_bytes()).hexdigest())),)
        monkeypatch.setitem(DATASETS, "dsb2018", dataclasses.replace(DATASETS["dsb2018"], files=files))
        yield protocols, srv


def _args(protocols: Path, out: Path) -> list[str]:
    return ["reproduce", "tiny", "--protocols", str(protocols), "--budget", "cpu", "--cpu-images", "2",
            "--out", str(out), "--images", "0", "--quiet"]


def test_reproduce_cpu_end_to_end_and_resume(setup, tmp_path, capsys):
    protocols, srv = setup
    out = tmp_path / "run"
    assert main(_args(protocols, out)) == 0
    printed = capsys.readouterr().out
    assert "6 published values" in printed
    assert "budget cpu: 3 change(s) to the protocol" in printed
    assert "seeds: seeds [0, 1] -> [0] (the first seed only)" in printed
    assert "dataset dsb: options.first_images unset -> 2 (every split cut to its first 2 images in name order)" in printed
    assert "regime fine-tuned: train_images all -> all of the first 2" in printed
    assert "dataset dsb2018: " in printed and any(path.endswith("dsb2018.zip") for path, _ in srv.requests)
    record = json.loads((out / "protocol.json").read_text())
    assert (record["protocol"], record["budget"], len(record["changes"])) == ("tiny", "cpu", 3)
    assert len(record["published"]["values"]) == 6

    # the report pairs each published value with this run's score of the same entry and metric
    results = load_results(out)
    by_regime = {ev.entry.regime: ev.evaluation for ev in results.evaluations}
    assert set(by_regime) == {"zero-shot", "fine-tuned"} and all(e.n_images == 2 for e in by_regime.values())
    table = out / "report" / "tables" / "published-tiny_paper-Table_1.csv"
    rows = list(csv.DictReader(line for line in table.read_text().splitlines() if not line.startswith("#")))
    assert len(rows) == 6
    for row in rows:
        expected = metric_value(by_regime[row["Regime"]].result, row["Metric"])
        assert float(row["This run"]) == pytest.approx(100 * expected, abs=1e-4)
        assert float(row["Low"]) <= float(row["This run"]) + 1e-9 <= float(row["High"]) + 2e-9
        assert row["Budget"] == "images" and row["Status"] == "compared" and row["Seeds"] == "0"
        if row["Published"]:
            assert float(row["Difference"]) == pytest.approx(float(row["This run"]) - float(row["Published"]), abs=1e-4)
    html = (out / "report" / "report.html").read_text()
    assert "Published vs this run" in html and (out / "report" / "figures" / "published_vs_run.png").is_file()

    # the same command again resumes: nothing reruns, nothing downloads again
    n_requests = len(srv.requests)
    assert main(_args(protocols, out)) == 0
    printed = capsys.readouterr().out
    assert "resuming the run" in printed and "0 grid entries run, 2 already done" in printed
    assert len(srv.requests) == n_requests
    # another budget into the same folder is refused before anything runs
    args = _args(protocols, out)
    args[args.index("cpu")] = "paper"
    assert main(args) == 2
    assert "not tiny with budget paper; use another --out" in capsys.readouterr().err


def test_missing_data_stops_before_running(setup, tmp_path, capsys):
    protocols, srv = setup
    (srv.root / "dsb2018.zip").unlink()
    assert main(_args(protocols, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "dataset dsb2018:" in err and "nothing was run" in err
    assert not (tmp_path / "run").exists()


def test_unknown_protocol(setup, capsys):
    protocols, _ = setup
    assert main(["reproduce", "nope", "--protocols", str(protocols)]) == 2
    assert "no protocol 'nope'" in capsys.readouterr().err
