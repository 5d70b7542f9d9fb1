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

``--micro`` instead times two pieces against the code they replaced, best of
3 in one process: the small-region cleanup of 208 candidate masks on a
256 x 256 tile (``_clean``, bounding-box crops, against ``_clean_full``, the
whole tile per mask) and one SAM ViT-B 512 px encode with its relative
position tables resized once at build time against resized on every forward.

Wall and process CPU seconds are both printed: on a shared machine the wall
time depends on the load (printed too). GPU rows run when CUDA is available.

Run:  .venv/bin/python benchmarks/cellseg1_speed.py [--backbones litemedsam,litemedsam@128,vit_b] [--grid-batches 2]
      .venv/bin/python benchmarks/cellseg1_speed.py --micro
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from segment_anything.modeling.image_encoder import get_rel_pos

from cellbench.methods.adapters.cellseg1.backbones import load_backbone, random_sam_vit, resize_sam_input, to_input
from cellbench.methods.adapters.cellseg1.forward import decode_points, encode
from cellbench.methods.adapters.cellseg1.inference import InferenceConfig, _clean, _clean_full, predict_tile
from cellbench.methods.adapters.cellseg1.lora import LoRA
from cellbench.methods.adapters.cellseg1.memory import keep_freed_memory
from cellbench.methods.adapters.cellseg1.train import _set_lora_train, point_loss
from cellbench.methods.adapters.cellseg1.augment import AugmentConfig, augment
from cellbench.methods.adapters.cellseg1.prompts import sample_points


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


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        with Clock() as c:
            fn()
        times.append(c.wall)
    return min(times)


def candidate_masks(n: int = 208, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """Cell-like candidate masks: a disk with a few specks beside it and a few pin holes in it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:size, :size]
    masks = []
    for _ in range(n):
        y, x, r = *rng.integers(0, size, 2), rng.integers(5, 16)
        mask = (yy - y) ** 2 + (xx - x) ** 2 < r * r
        for dy, dx in rng.integers(-r - 8, r + 9, size=(5, 2)):
            mask[np.clip(y + dy, 0, size - 1), np.clip(x + dx, 0, size - 1)] ^= True
        masks.append(mask)
    return masks


def bench_micro() -> None:
    masks = candidate_masks()
    same = all(np.array_equal(_clean(m, 20), _clean_full(m, 20)) for m in masks)
    before = best_of(lambda: [_clean_full(m, 20) for m in masks])
    after = best_of(lambda: [_clean(m, 20) for m in masks])
    print(f"cleanup of {len(masks)} masks, 256 x 256: whole tile {before:.3f} s, box crops {after:.3f} s, "
          f"identical={same}", flush=True)
    bb = random_sam_vit("vit_b", input_size=1024)  # as built: global-attention tables of 127 rows
    encoder = bb.model.image_encoder
    per_forward = [(b.attn.rel_pos_h, b.attn.rel_pos_w) for b in encoder.blocks]
    resize_sam_input(bb.model, 512)
    resized = [(b.attn, b.attn.rel_pos_h, b.attn.rel_pos_w) for b in encoder.blocks]
    image = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        encoder(image)  # warm-up
        for (attn, *_), (h, w) in zip(resized, per_forward):
            attn.rel_pos_h, attn.rel_pos_w = h, w
        before = best_of(lambda: encoder(image))
        for attn, h, w in resized:
            attn.rel_pos_h, attn.rel_pos_w = h, w
        after = best_of(lambda: encoder(image))
    print(f"ViT-B encode 512 px: rel-pos tables resized per forward {before:.3f} s, once at build {after:.3f} s",
          flush=True)
    grid = 512 // 16
    global_blocks = [i for i, b in enumerate(encoder.blocks) if b.window_size == 0]
    big = [t for i in global_blocks for t in per_forward[i]]
    lookups = [t for i in global_blocks for t in resized[i][1:]]
    with torch.no_grad():
        before, after = (best_of(lambda ts=ts: [get_rel_pos(grid, grid, t) for _ in range(100) for t in ts]) / 100
                         for ts in (big, lookups))
    print(f"  of which the {len(lookups)} rel-pos table look-ups per forward: "
          f"{before * 1e3:.2f} ms -> {after * 1e3:.2f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="litemedsam,litemedsam@128,vit_b", help="NAME[@INPUT_SIDE],...")
    ap.add_argument("--grid-batches", type=int, default=2)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--micro", action="store_true", help="only the cleanup and rel-pos micro-benchmarks")
    args = ap.parse_args()
    keep_freed_memory()  # see cellbench.methods.adapters.cellseg1.memory
    if args.micro:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
        bench_micro()
        return
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
