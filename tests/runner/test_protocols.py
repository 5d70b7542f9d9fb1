"""The papers' protocols under examples/protocols load as they ship and expand to the grid each paper ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellbench.data.registry import DATASETS
from cellbench.errors import DataError
from cellbench.runner import load_experiment
from cellbench.runner.experiment import experiment_from_dict
from cellbench.runner.grid import expand_grid

PROTOCOLS = Path(__file__).parents[2] / "examples" / "protocols"

# file -> (grid entries, {dataset label: registered name}, the paper it names)
EXPECTED = {
    # 6 datasets x (cellseg1, cellpose-cyto2, cellpose-scratch, stardist) x 4 regimes x 5 seeds
    "cellseg1.yaml": (6 * 4 * 4 * 5, {"dsb": "dsb2018", "cps": "cellpose-specialized", "csb": "cellseg-blood",
                                      "ecb": "deepbacs-ecoli-brightfield", "bsf": "deepbacs-bsubtilis-fluorescence",
                                      "cpg": "cellpose"},
                      "cellseg1_one_image_sam_lora"),
    # 4 tasks x (watershed 2 regimes, cellpose, cellpose-cyto3, cellpose-nuclei 2 regimes, cellseg1, mediar 2 regimes,
    # yolo when cellbench[yolo] is installed)
    "glioma_c6.yaml": (None, {"glioma-c6": "glioma-c6"}, "glioma_c6_dataset_paper"),
    "neurips22_report.yaml": (4, {"neurips22": "neurips22-cellseg"}, "neurips22_cellseg_model_benchmark_report"),
    # 5 tasks x (cellpose, stardist, maskrcnn, its Swin-S / Swin-T / ResNeSt / Res2Net / HRNet rows, MS-RCNN,
    # Cascade-Mask-RCNN-seesaw, SOLOv2, RetinaMask, Centermask2, Mask2Former, Mesmer, FeatureNet,
    # Segment-Anything, cellseg1)
    "cellseg_18_methods.yaml": (5 * 18, {"tissuenet-nuclear": "tissuenet", "tissuenet-dual-nuclei": "tissuenet",
                                        "tissuenet-dual-whole-cell": "tissuenet", "tissuenet-whole-cell": "tissuenet",
                                        "livecell": "livecell"},
                                "cell_segmentation_benchmark_18_methods_seggal"),
}


def test_every_protocol_is_checked_here():
    assert sorted(p.name for p in PROTOCOLS.glob("*.yaml") if not p.name.endswith(".published.yaml")) == \
        sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_protocol_loads_and_expands(name):
    n_entries, datasets, paper = EXPECTED[name]
    path = PROTOCOLS / name
    assert paper in path.read_text(), "each protocol names the paper (and table or figure) it reproduces"
    experiment = load_experiment(path)
    assert {d.name: d.registered for d in experiment.datasets} == datasets
    for d in experiment.datasets:  # every split the protocol reads is a split of the registered dataset
        splits = set(DATASETS[d.registered].splits)
        assert {d.train, d.valid, *(t.split for t in d.test)} - {None} <= splits, d.name
    if n_entries is None:  # glioma_c6: yolo is an extra that may be absent
        n_entries = 4 * (9 + ("yolo" not in experiment.skipped))
    assert len(expand_grid(experiment)) == n_entries


def test_registered_dataset_takes_no_path_or_layout():
    raw = {"name": "x", "datasets": {"d": {"registered": "dsb2018", "path": "/data"}},
           "methods": {"w": {"method": "watershed"}}}
    with pytest.raises(DataError, match="brings its own path and layout"):
        experiment_from_dict(raw)
    raw["datasets"]["d"] = {"registered": "nosuch"}
    with pytest.raises(DataError, match="unknown dataset 'nosuch'"):
        experiment_from_dict(raw)
