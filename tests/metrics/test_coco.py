"""COCO metrics equal pycocotools' arrays, number for number."""

import contextlib
import io

import numpy as np
import pytest

from cellbench.instances import InstanceSet, instance_to_rle
from cellbench.metrics import evaluate

from .helpers import dsb_pair, jitter, random_instances

pycocotools_coco = pytest.importorskip("pycocotools.coco")
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _pycocotools(gts: list[InstanceSet], preds: list[InstanceSet], max_dets: int):
    """Run COCOeval (segm) on the same instances; return its precision / recall at area 'all' and max_dets."""
    classes = gts[0].classes
    images, anns, results = [], [], []
    for img_id, (g, p) in enumerate(zip(gts, preds), start=1):
        images.append({"id": img_id, "height": g.shape[0], "width": g.shape[1], "file_name": f"{img_id}.tif"})
        for inst in g:
            rle = instance_to_rle(inst, g.shape)
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": inst.class_id + 1,
                         "segmentation": rle, "area": inst.area, "bbox": [0, 0, 1, 1], "iscrowd": 0})
        for inst in p:
            results.append({"image_id": img_id, "category_id": inst.class_id + 1,
                            "segmentation": instance_to_rle(inst, p.shape), "score": inst.score})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = pycocotools_coco.COCO()
        coco_gt.dataset = data
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results) if results else pycocotools_coco.COCO()
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
    m = ev.params.maxDets.index(max_dets)  # pycocotools sorts maxDets
    return ev.eval["precision"][:, :, :, 0, m], ev.eval["recall"][:, :, 0, m]


def _summary_from(precision, recall):
    def mean(s):
        s = s[s > -1]
        return float(np.mean(s)) if s.size else None

    return {"map": mean(precision), "ap50": mean(precision[0]), "ap75": mean(precision[5]),
            "ar50": mean(recall[0]), "ar75": mean(recall[5])}


@pytest.mark.parametrize("seed,n_classes,max_dets", [(0, 1, 3000), (1, 1, 3000), (2, 3, 3000), (3, 2, 5), (4, 1, 2)])
def test_random_overlapping_sets_equal_pycocotools(seed, n_classes, max_dets):
    rng = np.random.default_rng(seed)
    gts = [random_instances(rng, n=int(rng.integers(0, 12)), n_classes=n_classes) for _ in range(5)]
    preds = [jitter(rng, g) for g in gts]
    ref_p, ref_r = _pycocotools(gts, preds, max_dets)
    res = evaluate(gts, preds, coco=True, max_dets=max_dets)
    np.testing.assert_array_equal(res.coco.precision, ref_p)
    np.testing.assert_array_equal(res.coco.recall, ref_r)
    got = res.to_dict()["coco"]
    for key, value in _summary_from(ref_p, ref_r).items():
        assert got[key] == value, key
    assert got["max_dets"] == max_dets


def test_dsb_image_equals_pycocotools_with_more_than_100_cells():
    gt, pred = dsb_pair(0)
    rng = np.random.default_rng(0)
    g = InstanceSet.from_label_image(gt)
    p = InstanceSet.from_label_image(pred)
    p = p.replace(instances=tuple(i.replace(score=float(rng.random())) for i in p))
    assert len(g) > 100 and len(p) > 100  # beyond pycocotools' default maxDets of 100
    ref_p, ref_r = _pycocotools([g], [p], 3000)
    res = evaluate([g], [p], coco=True)
    np.testing.assert_array_equal(res.coco.precision, ref_p)
    np.testing.assert_array_equal(res.coco.recall, ref_r)
    assert res.to_dict()["coco"]["map"] == _summary_from(ref_p, ref_r)["map"]


def test_coco_needs_scores():
    from cellbench.errors import DataError

    gt, pred = dsb_pair(0)
    with pytest.raises(DataError, match="score"):
        evaluate([InstanceSet.from_label_image(gt)], [InstanceSet.from_label_image(pred)], coco=True, names=["dsb"])
