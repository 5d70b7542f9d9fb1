"""CellSeg1 acceptance on real offline data: train on one half of a DSB2018 image, test on the other.

The image is the DSB2018 test image shipped in the stardist wheel (512 x 512,
~125 nuclei). The left half (x < 256) trains a CellSeg1 model on the real
pretrained LiteMedSAM backbone; the right half is predicted (tiled) and
scored with cellbench's metrics (F1 and ap_dsb = TP/(TP+FP+FN) at IoU 0.5 /
0.75 / 0.9, pooled). Nothing is downloaded.

The paper's schedule (300 epochs x 32 patches, 45 points per patch, LoRA in
encoder and decoder) is ~9,600 patch steps; on two shared CPU cores one patch
step of LiteMedSAM costs seconds, so the defaults here are a CPU budget
(``--minutes``-sized epochs, fewer points, decoder-only LoRA). Every setting
used is printed, with the numbers, as JSON.

Run:  .venv/bin/python benchmarks/cellseg1_dsb.py [--epochs 2] [--points-per-side 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# glibc returns every large freed block to the OS and page-faults it back on the
# next allocation, which makes CPU SAM decoding 2-3x slower; keep freed memory.
if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 34)
    os.environ["MALLOC_TRIM_THRESHOLD_"] = str(1 << 34)
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from cellbench.data.dataset import Sample  # noqa: E402
from cellbench.instances import InstanceSet  # noqa: E402
from cellbench.methods import get_method  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="litemedsam")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--max-positive", type=int, default=8)
    ap.add_argument("--max-negative", type=int, default=4)
    ap.add_argument("--lora-parts", default="mask_decoder", help="comma list: image_encoder,mask_decoder")
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--train-point-embeddings", action="store_true", help="LiteMedSAM never learned point prompts")
    ap.add_argument("--train-side", choices=["left", "right"], default="left")
    ap.add_argument("--zero-shot", action="store_true", help="skip training (LoRA at zero = the frozen backbone)")
    ap.add_argument("--out", default=None, help="write the JSON result here too")
    args = ap.parse_args()

    from stardist.data import test_image_nuclei_2d

    from cellbench.metrics import evaluate

    image, mask = test_image_nuclei_2d(return_mask=True)
    half = image.shape[1] // 2
    left, right = (slice(None), slice(0, half)), (slice(None), slice(half, None))
    train_sl, test_sl = (left, right) if args.train_side == "left" else (right, left)
    train = Sample("dsb-train-half", InstanceSet.from_label_image(mask[train_sl]), array=image[train_sl])
    test_gt = InstanceSet.from_label_image(mask[test_sl])

    method_class = get_method("cellseg1")
    config = method_class.Config(
        backbone=args.backbone,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_positive=args.max_positive,
        max_negative=args.max_negative,
        lora_parts=tuple(p for p in args.lora_parts.split(",") if p),
        points_per_side=args.points_per_side,
        train_point_embeddings=args.train_point_embeddings,
    )
    method = method_class(config)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0, c0 = time.perf_counter(), time.process_time()
    if args.zero_shot:
        history = None
        train_s = 0.0
        _ = method.backbone
    else:
        history = method.train([train], seed=0, progress=tqdm)
        train_s = time.perf_counter() - t0
    train_cpu_s = time.process_time() - c0
    t1, c1 = time.perf_counter(), time.process_time()
    pred = method.predict(image[test_sl], progress=tqdm)
    predict_s = time.perf_counter() - t1
    predict_cpu_s = time.process_time() - c1

    ev = evaluate([test_gt], [pred], thresholds=(0.5, 0.75, 0.9)).to_dict()["pooled"]
    result = {
        "data": f"stardist test_image_nuclei_2d {image.shape}, train {args.train_side} half "
        f"({len(train.instances)} cells), test other half ({len(test_gt)} cells)",
        "config": {k: v for k, v in method.config.__dict__.items()},
        "train_s": round(train_s, 1),
        "predict_s": round(predict_s, 1),
        "train_cpu_s": round(train_cpu_s, 1),
        "predict_cpu_s": round(predict_cpu_s, 1),
        "load_average": os.getloadavg(),
        "n_pred": len(pred),
        "n_overlapping_pred": pred.n_overlapping,
        "losses": [round(e.loss, 4) for e in history.epochs] if history else None,
        "metrics": {t: {k: ev[t][k] for k in ("f1", "ap_dsb", "precision", "recall", "tp", "fp", "fn") if k in ev[t]} for t in ev if t[0].isdigit()},
        "torch_threads": torch.get_num_threads(),
    }
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
