"""CellSeg1 NMS speed: two-stage mask NMS against pure pairwise mask NMS and box NMS.

~1,000 candidate masks on a 1024 x 1024 image, shaped like a point-grid
output: ~330 elliptical cells densely packed (neighbouring boxes overlap),
each found 2-4 times with jittered outlines, at NMS threshold 0.05 (the
paper's). Checks that the two-stage NMS keeps exactly the set pure mask NMS
keeps, and prints the time ratios. Box NMS is shown for speed and for how
many distinct cells it wrongly drops.

Run:  .venv/bin/python benchmarks/cellseg1_nms.py
"""

from __future__ import annotations


import numpy as np

from _timing import best_of  # benchmarks/_timing.py (scripts run from this folder)
from cellbench.instances import Instance
from cellbench.methods.adapters.cellseg1.nms import box_nms, mask_nms_pairwise, two_stage_mask_nms

SHAPE = (1024, 1024)


def candidates(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks, boxes, scores = [], [], []
    step = 56
    for cy in range(30, SHAPE[0] - 30, step):
        for cx in range(30, SHAPE[1] - 30, step):
            cy_, cx_ = cy + rng.integers(-8, 9), cx + rng.integers(-8, 9)
            a, b = rng.uniform(14, 30), rng.uniform(10, 22)
            theta = rng.uniform(0, np.pi)
            for _ in range(rng.integers(2, 5)):
                y0, x0 = max(0, cy_ - 40), max(0, cx_ - 40)
                yy, xx = np.mgrid[y0 : min(SHAPE[0], cy_ + 40), x0 : min(SHAPE[1], cx_ + 40)]
                dy, dx = yy - cy_ + rng.normal(0, 1), xx - cx_ + rng.normal(0, 1)
                u = dx * np.cos(theta) + dy * np.sin(theta)
                v = -dx * np.sin(theta) + dy * np.cos(theta)
                s = rng.uniform(0.85, 1.15)
                m = (u / (a * s)) ** 2 + (v / (b * s)) ** 2 < 1
                inst = Instance.from_mask(m, offset=(y0, x0))
                masks.append(inst.mask)
                boxes.append(inst.bbox)
                scores.append(rng.uniform(0.5, 1.0))
    return masks, np.array(boxes), np.array(scores)


def main() -> None:
    masks, boxes, scores = candidates()
    print(f"{len(masks)} candidate masks on a {SHAPE[0]} x {SHAPE[1]} image, IoU threshold 0.05")
    t_two, kept_two = best_of(lambda: two_stage_mask_nms(masks, boxes, scores, iou_threshold=0.05))
    t_pure, kept_pure = best_of(lambda: mask_nms_pairwise(masks, boxes, scores, SHAPE, iou_threshold=0.05), repeat=1)
    t_box, kept_box = best_of(lambda: box_nms(boxes, scores, iou_threshold=0.05))
    same = sorted(kept_two.tolist()) == sorted(kept_pure.tolist()) and kept_two.tolist() == kept_pure.tolist()
    print(f"two-stage mask NMS : {t_two * 1e3:9.1f} ms  kept {len(kept_two)}")
    print(f"pure mask NMS      : {t_pure * 1e3:9.1f} ms  kept {len(kept_pure)}")
    print(f"box NMS            : {t_box * 1e3:9.1f} ms  kept {len(kept_box)}")
    print(f"identical kept set (two-stage vs pure mask NMS): {same}")
    print(f"speed-up two-stage vs pure mask NMS: {t_pure / t_two:.1f}x")
    print(f"two-stage / box NMS time: {t_two / t_box:.1f}x; box NMS drops {len(kept_two) - len(kept_box)} cells mask NMS keeps")
    if not same:
        raise SystemExit("two-stage NMS kept a different set than pure mask NMS")


if __name__ == "__main__":
    main()
