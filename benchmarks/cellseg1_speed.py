"""CellSeg1 speed: grid inference per tile and one training step, LiteMedSAM and SAM ViT-B.

ViT-B uses random weights (timing only; the architecture and the 512 x 512
input are the real ones). Per backbone:

* inference: one image embedding of a tile at the backbone's input size
  (ViT-B 512 x 512, LiteMedSAM 256 x 256, its fixed size), then point batches
  of 64 decoded with scores, thresholds and NMS. ``--grid-batches`` batches
  are timed and the full 32 x 32 grid (16 batches) is extrapolated from their
  mean, unless ``--grid-batches 16``.
* training: one patch step as the paper runs it (augment, encode with LoRA,
  30 positive + 15 negative points, loss, backward), after one warm-up step.

Wall and process CPU seconds are both printed: on a shared machine the wall
time depends on the load (printed too). GPU rows run when CUDA is available.

Run:  .venv/bin/python benchmarks/cellseg1_speed.py [--backbones litemedsam,vit_b] [--grid-batches 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # see benchmarks/cellseg1_dsb.py
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 34)
    os.environ["MALLOC_TRIM_THRESHOLD_"] = str(1 << 34)
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cellbench.methods.cellseg1.backbones import load_backbone, random_sam_vit, to_input  # noqa: E402
from cellbench.methods.cellseg1.forward import decode_points, encode  # noqa: E402
from cellbench.methods.cellseg1.inference import InferenceConfig, predict_tile  # noqa: E402
from cellbench.methods.cellseg1.lora import LoRA  # noqa: E402
from cellbench.methods.cellseg1.train import TrainConfig, _set_lora_train, point_loss  # noqa: E402
from cellbench.methods.cellseg1.augment import augment  # noqa: E402
from cellbench.methods.cellseg1.prompts import sample_points  # noqa: E402


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
    bb = load_backbone("litemedsam") if name == "litemedsam" else random_sam_vit(name, input_size=512)
    LoRA().apply(bb.model)
    bb.model.to(device).eval()
    return bb


def bench_inference(bb, device, n_batches: int) -> dict:
    image, _ = synthetic_patch()
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
            predict_tile(bb, image, side=256, config=cfg)
        out["grid32_tile_wall_s"] = full.wall
    return out


def bench_train_step(bb, device) -> dict:
    cfg = TrainConfig()
    patch, labels = synthetic_patch(seed=1)
    rng = np.random.default_rng(0)
    result = {}
    for attempt in ("warmup", "timed"):
        _set_lora_train(bb.model, True)
        with Clock() as c:
            img, lab = augment(patch, labels, rng, out_size=bb.input_size, config=cfg.augment)
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
    ap.add_argument("--backbones", default="litemedsam,vit_b")
    ap.add_argument("--grid-batches", type=int, default=2)
    ap.add_argument("--no-train", action="store_true")
    args = ap.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    for device in devices:
        for name in args.backbones.split(","):
            bb = build(name, device)
            row = {"backbone": name, "device": str(device), "input": bb.input_size}
            row.update(bench_inference(bb, device, args.grid_batches))
            if not args.no_train:
                row.update(bench_train_step(bb, device))
            print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            del bb
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
