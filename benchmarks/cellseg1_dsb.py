"""CellSeg1 acceptance on real offline data: train on one half of a DSB2018 image, test on the other.

The image is the DSB2018 test image shipped in the stardist wheel (512 x 512,
~125 nuclei). The left half (x < 256) trains a CellSeg1 model on the real
pretrained LiteMedSAM backbone; the right half is predicted (tiled) and
scored with cellbench's metrics (F1 and ap_dsb = TP/(TP+FP+FN) at IoU 0.5 /
0.75 / 0.9, pooled). Nothing is downloaded.

The paper's schedule (300 epochs x 32 patches of 256 px at 512 px input) is
~9,600 patch steps; on two CPU cores the defaults here fit in ~11 minutes:
128 px patches at LiteMedSAM's native scale, encoder input 128 (a 32 x 32
token grid, 4x cheaper than LiteMedSAM's 256), 8 epochs of 42 patches,
4 patches per optimiser step, the paper's 30 + 15 points per patch, LoRA in
encoder and decoder, and each point prompted as a cell-sized box (LiteMedSAM
learned boxes only; ``--prompt point`` gives the paper's point prompts).
These are ``CellSeg1.presets["cpu"]`` (``cellbench train cellseg1 --preset cpu``);
the other settings are the paper's. Every setting used is printed, with the
numbers, as JSON.

Run:  .venv/bin/python benchmarks/cellseg1_dsb.py [--train-side right] [--prompt point --train-point-embeddings]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from tqdm import tqdm

from cellbench.data.dataset import Sample
from cellbench.instances import InstanceSet
from cellbench.methods import config_from_dict, config_to_dict, get_method
from cellbench.methods.adapters.cellseg1.memory import keep_freed_memory


def main() -> None:
    method_class = get_method("cellseg1")
    cpu = config_from_dict(method_class.Config, method_class.presets["cpu"])  # the defaults below
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default=cpu.backbone)
    ap.add_argument("--input-size", type=int, default=cpu.input_size,
                    help="encoder input side (LiteMedSAM: 256 trained, 128 is 4x cheaper)")
    ap.add_argument("--patch-size", type=int, default=cpu.train.patch_size, help="training patch and prediction tile side, pixels")
    ap.add_argument("--epochs", type=int, default=cpu.train.epochs)
    ap.add_argument("--lr", type=float, default=cpu.train.lr)
    ap.add_argument("--min-patches", type=int, default=cpu.train.min_patches)
    ap.add_argument("--batch-size", type=int, default=cpu.train.batch_size)
    ap.add_argument("--grad-accum", type=int, default=cpu.train.grad_accum)
    ap.add_argument("--max-positive", type=int, default=cpu.train.max_positive)
    ap.add_argument("--max-negative", type=int, default=cpu.train.max_negative)
    ap.add_argument("--lora-parts", default=",".join(cpu.lora_parts), help="comma list: image_encoder,mask_decoder")
    ap.add_argument("--points-per-side", type=int, default=cpu.inference.points_per_side)
    ap.add_argument("--prompt", choices=["auto", "point", "box"], default=cpu.prompt, help="auto: box for LiteMedSAM")
    ap.add_argument("--train-point-embeddings", action="store_true", help="LiteMedSAM never learned point prompts")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch CPU threads (README's rows: 2; another count gives other weights)")
    ap.add_argument("--train-side", choices=["left", "right"], default="left")
    ap.add_argument("--zero-shot", action="store_true", help="skip training (LoRA at zero = the frozen backbone)")
    ap.add_argument("--out", default=None, help="write the JSON result here too")
    ap.add_argument("--save", default=None, help="save the trained LoRA weights (save_weights) into this folder")
    args = ap.parse_args()
    keep_freed_memory()  # see cellbench.methods.adapters.cellseg1.memory

    from stardist.data import test_image_nuclei_2d

    from cellbench.metrics import evaluate

    image, mask = test_image_nuclei_2d(return_mask=True)
    half = image.shape[1] // 2
    left, right = (slice(None), slice(0, half)), (slice(None), slice(half, None))
    train_sl, test_sl = (left, right) if args.train_side == "left" else (right, left)
    train = Sample("dsb-train-half", InstanceSet.from_label_image(mask[train_sl]), array=image[train_sl])
    test_gt = InstanceSet.from_label_image(mask[test_sl])

    config = config_from_dict(method_class.Config, {
        "backbone": args.backbone,
        "threads": args.threads,
        "input_size": args.input_size,
        "lora_parts": [p for p in args.lora_parts.split(",") if p],
        "train_point_embeddings": args.train_point_embeddings,
        "prompt": args.prompt,
        "train": {
            "patch_size": args.patch_size,
            "epochs": args.epochs,
            "lr": args.lr,
            "min_patches": args.min_patches,
            "batch_size": args.batch_size,
            "grad_accum": args.grad_accum,
            "max_positive": args.max_positive,
            "max_negative": args.max_negative,
        },
        "inference": {"points_per_side": args.points_per_side},
    })
    method = method_class(config)
    t0, c0 = time.perf_counter(), time.process_time()
    if args.zero_shot:
        history = None
        train_s = 0.0
        _ = method.backbone
    else:
        history = method.train([train], seed=0, progress=tqdm)
        train_s = time.perf_counter() - t0
    train_cpu_s = time.process_time() - c0
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        method.save_weights(args.save)
    t1, c1 = time.perf_counter(), time.process_time()
    pred = method.predict(image[test_sl], progress=tqdm)
    predict_s = time.perf_counter() - t1
    predict_cpu_s = time.process_time() - c1

    ev = evaluate([test_gt], [pred], thresholds=(0.5, 0.75, 0.9)).to_dict()["pooled"]
    result = {
        "data": f"stardist test_image_nuclei_2d {image.shape}, train {args.train_side} half "
        f"({len(train.instances)} cells), test other half ({len(test_gt)} cells)",
        "config": config_to_dict(method.config),
        "train_s": round(train_s, 1),
        "predict_s": round(predict_s, 1),
        "train_cpu_s": round(train_cpu_s, 1),
        "predict_cpu_s": round(predict_cpu_s, 1),
        "load_average": os.getloadavg(),
        "n_pred": len(pred),
        "n_overlapping_pred": pred.n_overlapping,
        "losses": [round(e.loss, 4) for e in history.epochs] if history else None,
        "metrics": {t: {k: ev[t][k] for k in ("f1", "ap_dsb", "precision", "recall", "tp", "fp", "fn") if k in ev[t]} for t in ev if t[0].isdigit()},
        "torch_threads": history.info["torch_threads"] if history else args.threads,
    }
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
