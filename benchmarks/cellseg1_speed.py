"""CellSeg1 speed: grid inference per tile and one training step, LiteMedSAM and SAM ViT-B.

ViT-B uses random weights (timing only; the architecture and the 512 x 512
input are the real ones). Per backbone:

* inference: one image embedding of a tile at the backbone's input size
  (ViT-B 512 x 512, LiteMedSAM 256 x 256 as trained, and 128 x 128 as
  ``litemedsam@128``, the setting of benchmarks/cellseg1_dsb.py), then point batches
  of 64 decoded with scores, thresholds and NMS. ``--grid-batches`` batches
  are timed and the full 32 x 32 grid (16 batches) is extrapolated from their
  mean, unless ``--grid-batches 16``.
* training: one patch step as the paper runs it (augment, encode with LoRA,
  30 positive + 15 negative points, loss, backward), after one warm-up step.

Wall and process CPU seconds are both printed: on a shared machine the wall
time depends on the load (printed too). GPU rows run when CUDA is available.

Run:  .venv/bin/python benchmarks/cellseg1_speed.py [--backbones litemedsam,litemedsam@128,vit_b] [--grid-batches 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from cellbench.methods.cellseg1.backbones import load_backbone, random_sam_vit, to_input
from cellbench.methods.cellseg1.forward import decode_points, encode
from cellbench.methods.cellseg1.inference import InferenceConfig, predict_tile
from cellbench.methods.cellseg1.lora import LoRA
from cellbench.methods.cellseg1.memory import keep_freed_memory
from cellbench.methods.cellseg1.train import _set_lora_train, point_loss
from cellbench.methods.cellseg1.augment import AugmentConfig, augment
from cellbench.methods.cellseg1.prompts import sample_points


class Clock:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def synthetic_patch(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    for k, (y, x) in enumerate(rng.integers(12, size - 12, size=(60, 2)), start=1):
        labels[((yy - y) ** 2 + (xx - x) ** 2 < rng.integers(60, 200)) & (labels == 0)] = k
    image = np.repeat(((labels > 0) * 160 + rng.integers(0, 60, labels.shape)).astype(np.uint8)[..., None], 3, axis=2)
    return image, labels


def build(name: str, device: torch.device):
    """``litemedsam`` (256 px input), ``litemedsam@128`` (another input side) or a random SAM ViT at 512."""
    base, _, side = name.partition("@")
    if base == "litemedsam":
        bb = load_backbone("litemedsam", input_size=int(side) if side else None)
    else:
        bb = random_sam_vit(base, input_size=int(side) if side else 512)
    LoRA().apply(bb.model)
    bb.model.to(device).eval()
    return bb


def bench_inference(bb, device, n_batches: int) -> dict:
    tile = min(256, bb.input_size)  # the training patch: 256 px (the paper's), 128 at 128 px input
    image, _ = synthetic_patch(size=tile)
    cfg = InferenceConfig()
    with torch.no_grad(), Clock() as enc:
        embedding = encode(bb, to_input(image, bb).to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
    pts = torch.rand(cfg.points_batch, 2, generator=torch.Generator().manual_seed(0)) * bb.input_size
    times = []
    for _ in range(n_batches):
        with torch.no_grad(), Clock() as dec:
            decode_points(bb, embedding, pts.to(device))
            if device.type == "cuda":
                torch.cuda.synchronize()
        times.append((dec.wall, dec.cpu))
    batch_wall, batch_cpu = np.mean(times, axis=0)
    n_full = (cfg.points_per_side**2) // cfg.points_batch
    out = {
        "encode_wall_s": enc.wall,
        "encode_cpu_s": enc.cpu,
        "decode64_wall_s": batch_wall,
        "decode64_cpu_s": batch_cpu,
        "grid32_tile_wall_s_est": enc.wall + n_full * batch_wall,
    }
    if n_batches >= n_full:  # the real thing, thresholds and NMS included
        with Clock() as full:
            predict_tile(bb, image, side=tile, config=cfg)
        out["grid32_tile_wall_s"] = full.wall
    return out


def bench_train_step(bb, device) -> dict:
    patch, labels = synthetic_patch(size=min(256, bb.input_size), seed=1)
    rng = np.random.default_rng(0)
    result = {}
    for attempt in ("warmup", "timed"):
        _set_lora_train(bb.model, True)
        with Clock() as c:
            img, lab = augment(patch, labels, rng, out_size=bb.input_size, config=AugmentConfig())
            sample = sample_points(lab, rng)
            emb = encode(bb, to_input(img, bb).to(device))
            logits, iou = decode_points(bb, emb, torch.from_numpy(sample.points).to(device))
            bce, mse = point_loss(logits, iou, lab, sample)
            (bce + mse).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
        bb.model.zero_grad(set_to_none=True)
        result = {"train_step_wall_s": c.wall, "train_step_cpu_s": c.cpu, "points": len(sample)}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="litemedsam,litemedsam@128,vit_b", help="NAME[@INPUT_SIDE],...")
    ap.add_argument("--grid-batches", type=int, default=2)
    ap.add_argument("--no-train", action="store_true")
    args = ap.parse_args()
    keep_freed_memory()  # see cellbench.methods.cellseg1.memory
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    for device in devices:
        for name in args.backbones.split(","):
            bb = build(name, device)
            row = {"backbone": name, "device": str(device), "input": bb.input_size, "tile": min(256, bb.input_size)}
            row.update(bench_inference(bb, device, args.grid_batches))
            if not args.no_train:
                row.update(bench_train_step(bb, device))
            print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            del bb
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
