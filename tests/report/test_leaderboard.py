"""The leaderboard and the seeds table on hand-made evaluation records: exact means and sds, bold, the HTML."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from cellbench.analysis import bootstrap_interval, image_counts
from cellbench.report.html import Section, render_html
from cellbench.report.leaderboard import leaderboard_table, score_rows, seed_aggregates, seed_table
from cellbench.report.plots import seed_figure
from cellbench.report.results import EntryEvaluation
from cellbench.runner import EntryRecord, EvaluationRecord

PER_IMAGE = [{"image": f"img{k}", "by_iou": {"0.5": {"tp": tp, "fp": fp, "fn": fn}}}
             for k, (tp, fp, fn) in enumerate([(8, 2, 1), (5, 0, 4), (9, 1, 1), (4, 4, 4)])]


def _ev(method, regime, seed, f1, *, dataset="dsb", split="test", gt="overlap", f1_75=None, coco=None):
    entry = EntryRecord(key=f"{dataset}/{method}/{regime}/{seed}",
                        label=f"{dataset}/nuclei/{method}/{regime}/seed{seed}", dataset=dataset, task="nuclei",
                        method=method, method_impl=method, regime=regime, train_images=None, seed=seed,
                        status="done", error=None, config={})
    result = {"pooled": {"0.5": {"f1": f1, "ap_dsb": f1 / (2 - f1)}, "0.75": {"f1": f1_75}},
              "per_image": PER_IMAGE}
    if coco is not None:
        result["coco"] = {"map": coco}
    return EntryEvaluation(entry, EvaluationRecord(
        split=split, ground_truth=gt, flatten_policy=None if gt == "overlap" else "priority-last", boundary_px=0,
        thresholds=(0.5, 0.75), n_images=len(PER_IMAGE), predict_wall_s=1.0, result=result))


def _grid():
    """unet 3 seeds (0.5, 0.6, 0.7), cellpose 3 seeds (0.7, 0.8, 0.9), stardist pretrained 1 seed (0.75)."""
    evs = [_ev("unet", "all", s, f1, f1_75=f1 - 0.2) for s, f1 in enumerate((0.5, 0.6, 0.7))]
    evs += [_ev("cellpose", "all", s, f1) for s, f1 in enumerate((0.7, 0.8, 0.9))]
    evs += [_ev("stardist", "pretrained", 0, 0.75)]
    evs += [_ev("unet", "all", s, 0.99, gt="flattened") for s in range(3)]  # not on the leaderboard
    return evs


def test_score_rows_read_the_pooled_numbers():
    row = score_rows([_ev("unet", "all", 2, 0.6, f1_75=0.4, coco=0.3)])[0]
    assert {k: row[k] for k in ("method", "regime", "seed", "split", "ground_truth", "f1@0.5", "f1@0.75",
                                "coco_map")} == {"method": "unet", "regime": "all", "seed": 2, "split": "test",
                                                 "ground_truth": "overlap", "f1@0.5": 0.6, "f1@0.75": 0.4,
                                                 "coco_map": 0.3}
    assert row["ap_dsb@0.5"] == pytest.approx(0.6 / 1.4) and row["per_image"] is PER_IMAGE


def test_leaderboard_mean_sd_bold_and_one_seed():
    t = leaderboard_table(seed_aggregates(_grid(), intervals=False))
    assert t.header() == ("Dataset", "unet (all)", "cellpose (all)", "stardist (pretrained)")
    assert t.formatted() == [["dsb", "0.600 ± 0.100 (n 3)", "0.800 ± 0.100 (n 3)", "0.750 ± – (n 1)"]]
    assert t.bold_cells() == {(0, 2)}
    assert "overlapping ground truth" in t.caption and "sample sd (ddof 1" in t.caption
    assert "differ in their number of seeds" in t.caption and "split test" in t.caption
    # the CSV: one row per cell, plain numbers
    assert t.columns[4:] == ("Method", "Regime", "Seeds", "n seeds", "F1@50 mean", "F1@50 sd", "Best in row")
    unet, cellpose, stardist = t.rows
    assert unet[:8] == ("dsb", "nuclei", "test", 0, "unet", "all", "0 1 2", 3)
    assert unet[8] == pytest.approx(0.6) and unet[9] == pytest.approx(0.1) and unet[10] == ""
    assert cellpose[8] == pytest.approx(0.8) and cellpose[10] == "yes"
    assert stardist[7:] == (1, 0.75, None, "")
    csv = t.to_csv().splitlines()
    assert csv[2].startswith("dsb,nuclei,test,0,unet,all,0 1 2,3,0.6,0.1,") and "±" not in "".join(csv[1:])
    assert csv[4] == "dsb,nuclei,test,0,stardist,pretrained,0,1,0.75,,"


def test_leaderboard_rows_per_split_ties_and_empty_cells():
    evs = [_ev("unet", "all", s, 0.6, split=split) for s in range(2) for split in ("test", "valid")]
    evs += [_ev("cellpose", "all", s, 0.6, split="test") for s in range(2)]
    evs += [_ev("unet", "all", s, 0.5, dataset="other") for s in range(2)]
    t = leaderboard_table(seed_aggregates(evs, intervals=False))
    assert t.header() == ("Dataset", "Split", "unet (all)", "cellpose (all)")
    assert t.formatted() == [["dsb", "test", "0.600 ± 0.000", "0.600 ± 0.000"],
                             ["dsb", "valid", "0.600 ± 0.000", ""],
                             ["other", "test", "0.500 ± 0.000", ""]]
    assert t.bold_cells() == {(0, 2), (0, 3), (1, 2), (2, 2)}  # a tie: both bold
    assert "seeds 0, 1 (n = 2 in every cell)" in t.caption
    assert leaderboard_table(seed_aggregates([_ev("unet", "all", 0, 0.5, gt="flattened")])) is None


def test_seed_table_puts_the_seed_spread_beside_one_seeds_interval():
    aggs = seed_aggregates(_grid(), n_boot=100, seed=4)
    t = seed_table(aggs)
    assert t.header() == ("Dataset", "Task", "Split", "Ground truth", "Model", "Seeds", "F1@50 across seeds",
                          "F1@75 across seeds", "AP@50 across seeds", "F1@50 of one seed [95 % interval across images]")
    iv = bootstrap_interval(image_counts(PER_IMAGE, 0.5), "f1", n_boot=100, seed=4)
    unet = t.formatted()[0]
    assert unet[:6] == ["dsb", "nuclei", "test", "overlap", "unet (all)", "0, 1, 2"]
    assert unet[6:8] == ["0.600 ± 0.100", "0.400 ± 0.100"]
    assert unet[9] == f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}], seed 0"
    assert t.formatted()[2][6:8] == ["0.750 ± –", "n/a"]
    assert t.formatted()[3][3] == "flattened (priority-last)"
    assert t.rows[0][-5:] == (0, iv.estimate, iv.low, iv.high, 4)
    assert "100 resamples" in t.caption and "seed 4" in t.caption and "neither averaged nor pooled" in t.caption
    assert "COCO" not in "".join(t.header())
    with_coco = seed_table(seed_aggregates([_ev("unet", "all", 0, 0.5, coco=0.25)], intervals=False))
    assert with_coco.header()[-2] == "COCO mAP across seeds" and with_coco.formatted()[0][-1] == "n/a"
    assert seed_table(()) is None


class _Cells(HTMLParser):
    """The text of every td, and whether it sat in a strong."""

    def __init__(self):
        super().__init__()
        self.cells: list[tuple[str, bool]] = []
        self._in_td = self._strong = False

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self.cells.append(("", False))
        self._in_td = self._in_td or tag == "td"
        self._strong = self._strong or tag == "strong"

    def handle_endtag(self, tag):
        self._in_td = self._in_td and tag != "td"
        self._strong = self._strong and tag != "strong"

    def handle_data(self, data):
        if self._in_td:
            text, bold = self.cells[-1]
            self.cells[-1] = (text + data, bold or self._strong)


def test_html_bolds_the_best_cell_escaped():
    evs = [_ev("a<b>", "all", 0, 0.9), _ev("c&d", "all", 0, 0.5)]
    page = render_html("t", "i", [Section("L", tables=(leaderboard_table(seed_aggregates(evs, intervals=False)),))])
    assert "<th>a&lt;b&gt; (all)</th>" in page and "<strong>0.900 ± –</strong>" in page
    parser = _Cells()
    parser.feed(page)
    assert parser.cells == [("dsb", False), ("0.900 ± –", True), ("0.500 ± –", False)]


def test_seed_figure(tmp_path):
    path = seed_figure(seed_aggregates(_grid(), intervals=False), tmp_path / "seeds.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    assert seed_figure(seed_aggregates([_ev("u", "all", 0, 0.5, gt="flattened")]), tmp_path / "no.png") is None
