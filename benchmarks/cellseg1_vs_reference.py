"""CellSeg1 in cellbench against the authors' code (github Nuisal/cellseg1), side by side on CPU.

Two units, each run in fresh processes, sides alternating, best of ``--repeat``:

* ``train``: one training step (loss + backward) on 4 images of 512 x 512
  (the encoder input) x 45 point prompts (30 cells + 15 background).
  Reference: its ``cellseg1_train.compute_loss`` on the batch of 4 with its
  ``LoRA_Sam`` (it encodes the 4 images in one call). cellbench: its training
  loss with ``encode_batch`` 1 (one patch per encoder call, the default) and
  with ``encode_batch`` 4 (all four in one call).
* ``encoder``: the part of ``train`` both sides must do: the image encoder's
  forward and backward (LoRA on, the loss a plain sum of the embeddings) on the
  same 4 images, one per call, through each side's own encoder code. What
  ``train`` costs beyond it is prompts, decoder and loss: the only place one
  side can be much faster than the other.
* ``grid``: grid inference on one 512 px tile: 32 x 32 point prompts in
  batches of 64, IoU and stability thresholds, mask NMS. Reference: its
  ``SamAutomaticMaskGeneratorOptMaskNMS`` with the paper's settings and no
  crop layers (one tile); cellbench: ``predict_tile`` with its defaults.

Both sides load the same seeded random SAM ViT-B weights (saved once to a
temporary file; each side resizes them to 512 px input its own way), get
LoRA rank 4 on q and v of every encoder block and every mask-decoder
attention (dropout 0.1), run torch with ``--threads`` threads, and read the same
images and prompts (a synthetic image of disks; the points are sampled once
by cellbench's sampler and given to both). Each process times one untimed
warm-up and then the unit.

Allocator: "same" applies cellbench's ``methods/adapters/cellseg1/memory.py`` glibc
setting (loaded by file path) in both processes; "as shipped" is the
reference without it (cellbench always applies it). Both are run.

Peak memory is the whole worker process's peak RSS, read by a small wrapper
process with ``getrusage(RUSAGE_CHILDREN)`` (Linux carries a parent's
high-water mark across fork + exec, so the big benchmark process cannot
measure its children itself). Wall and CPU seconds of the unit are printed
with the load average: on a shared machine the wall time depends on it.

The reference runs from a local copy; nothing of it is imported here or in
cellbench. Make the copy (its checkpoints are not needed)::

    git clone --depth 1 https://github.com/Nuisal/cellseg1 /tmp/cellseg1_ref

Its ``.cuda()`` calls are made no-ops and its mask NMS runs on CPU, by the
reference-side worker only; modules its training script imports but
``compute_loss`` does not use (the dataset, the sampler) are stubbed.

Run:  .venv/bin/python benchmarks/cellseg1_vs_reference.py --reference /tmp/cellseg1_ref [--repeat 2] [--units train,encoder,grid]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEMORY_PY = ROOT / "src" / "cellbench" / "methods" / "cellseg1" / "memory.py"
N_IMAGES, SIZE, LORA_RANK = 4, 512, 4

#: Runs ``argv`` and prints its result with the child's peak RSS; small, so the child starts small.
WRAPPER = """\
import json, resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if r.returncode:
    sys.stderr.write(r.stdout + r.stderr)
    sys.exit(r.returncode)
out = json.loads(r.stdout.strip().splitlines()[-1])
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(out))
"""

#: Shared head of both workers: arguments, threads, allocator, clock.
COMMON = """\
import importlib.util, json, os, sys, time
side, unit, weights, data, allocator, threads, memory_py = sys.argv[1:8]
extra = sys.argv[8:]
if allocator == "same":
    spec = importlib.util.spec_from_file_location("cellbench_memory", memory_py)
    memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory)
    assert memory.keep_freed_memory(), "glibc setting did not take effect"
import numpy as np
import torch
torch.set_num_threads(int(threads))
torch.manual_seed(0)
arrays = np.load(data)

def timed(fn, model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fn()  # warm-up
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "load": load, "trainable": trainable}))
"""

CELLBENCH_WORKER = COMMON + """\
from cellbench.methods.adapters.cellseg1.backbones import Backbone, random_sam_vit, resize_sam_input, to_input
from cellbench.methods.adapters.cellseg1.forward import encode
from cellbench.methods.adapters.cellseg1.inference import InferenceConfig, predict_tile
from cellbench.methods.adapters.cellseg1.lora import LoRA
from cellbench.methods.adapters.cellseg1.prompts import PointSample
from cellbench.methods.adapters.cellseg1.train import _batch_loss, _set_lora_train

model = random_sam_vit("vit_b", input_size=1024).model  # the architecture; the weights come from the file
model.load_state_dict(torch.load(weights, weights_only=True))
resize_sam_input(model, SIZE)
model.eval()
backbone = Backbone(name="vit_b", sha256="random", model=model, input_size=SIZE, source=weights)
LoRA(rank=LORA_RANK).apply(model)

if unit == "train":
    encode_batch = int(extra[0])
    items = [
        (arrays["images"][i], arrays["labels"][i],
         PointSample(arrays["points"][i], arrays["positive"][i], arrays["label_ids"][i]))
        for i in range(len(arrays["images"]))
    ]
    _set_lora_train(model, True)

    def step():
        for start in range(0, len(items), encode_batch):
            losses = _batch_loss(backbone, items[start : start + encode_batch], encoder_grad=True)
            (sum(bce + mse for bce, mse in losses) / len(items)).backward()
        model.zero_grad(set_to_none=True)
elif unit == "encoder":
    _set_lora_train(model, True)

    def step():
        for image in arrays["images"]:
            encode(backbone, to_input(image, backbone)).sum().backward()
        model.zero_grad(set_to_none=True)
else:
    _set_lora_train(model, False)

    def step():
        predict_tile(backbone, arrays["tile"], side=SIZE, config=InferenceConfig())
timed(step, model)
""".replace("SIZE", str(SIZE)).replace("LORA_RANK", str(LORA_RANK))

REFERENCE_WORKER = COMMON + """\
import types
reference = extra[0]
sys.path.insert(0, reference)
torch.nn.Module.cuda = lambda self, *a, **k: self  # CPU only: the reference calls .cuda() throughout
torch.Tensor.cuda = lambda self, *a, **k: self
for name, attrs in {"data.dataset": ["TrainDataset"], "sampler": ["create_collate_fn"]}.items():
    stub = types.ModuleType(name)  # imported by cellseg1_train, unused by compute_loss
    for attr in attrs:
        setattr(stub, attr, None)
    sys.modules[name] = stub
import yaml
import mask_nms
mask_nms.DEVICE = torch.device("cpu")
from segment_anything import SamAutomaticMaskGeneratorOptMaskNMS, sam_model_registry
from peft.sam_lora_image_encoder_mask_decoder import LoRA_Sam
from cellseg1_train import compute_loss, to_tensor

config = yaml.safe_load(open(os.path.join(reference, "example_config.yaml")))
config.update(vit_name="vit_b", sam_image_size=SIZE, image_encoder_lora_rank=LORA_RANK,
              mask_decoder_lora_rank=LORA_RANK)
sam = sam_model_registry["vit_b"](checkpoint=weights, image_size=SIZE)
model = LoRA_Sam(sam, config)

if unit == "train":
    images = list(arrays["images"])
    all_points = [list(p.astype(np.int64)) for p in arrays["points"]]
    all_probs = [list(p.astype(int)) for p in arrays["positive"]]
    cell_masks = [
        [(labels == i) if pos else np.zeros_like(labels, dtype=bool) for i, pos in zip(ids, positive)]
        for labels, ids, positive in zip(arrays["labels"], arrays["label_ids"], arrays["positive"])
    ]
    model.train()

    def step():
        batch_images, batch_points = to_tensor(images, all_points, SIZE)
        loss = compute_loss(model, config, batch_images, batch_points, cell_masks, all_points, all_probs)
        loss.backward()
        model.zero_grad(set_to_none=True)
elif unit == "encoder":
    model.train()
    tensors = [torch.as_tensor(image.transpose(2, 0, 1), dtype=torch.float) for image in arrays["images"]]

    def step():
        for tensor in tensors:
            model.sam.encoder_image_embeddings([tensor]).sum().backward()
        model.zero_grad(set_to_none=True)
else:
    model.eval()
    generator = SamAutomaticMaskGeneratorOptMaskNMS(
        model=model.sam,
        points_per_side=config["points_per_side"],
        points_per_batch=config["points_per_batch"],
        crop_n_layers=0,
        box_nms_thresh=config["box_nms_thresh"],
        crop_nms_thresh=config["crop_nms_thresh"],
        pred_iou_thresh=config["pred_iou_thresh"],
        min_mask_region_area=config["min_mask_region_area"],
        max_mask_region_area_ratio=config["max_mask_region_area_ratio"],
        stability_score_thresh=config["stability_score_thresh"],
        stability_score_offset=config["stability_score_offset"],
    )

    def step():
        with torch.no_grad():
            generator.generate(arrays["tile"])
timed(step, model)
""".replace("SIZE", str(SIZE)).replace("LORA_RANK", str(LORA_RANK))


def disks_image(size: int, seed: int):
    """A uint8 RGB image of ~120 touching-free disks on noise, and its label image."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    for k, (y, x) in enumerate(rng.integers(12, size - 12, size=(120, 2)), start=1):
        labels[((yy - y) ** 2 + (xx - x) ** 2 < rng.integers(60, 250)) & (labels == 0)] = k
    gray = ((labels > 0) * 150 + rng.integers(0, 60, labels.shape)).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2), labels


def make_inputs(folder: Path) -> tuple[Path, Path]:
    """The seeded ViT-B weights and the images + prompts both sides read."""
    import numpy as np
    import torch

    from cellbench.methods.adapters.cellseg1.backbones import random_sam_vit
    from cellbench.methods.adapters.cellseg1.prompts import sample_points

    weights = folder / "sam_vit_b_random.pth"
    torch.save(random_sam_vit("vit_b", input_size=1024, seed=0).model.state_dict(), weights)
    rng = np.random.default_rng(0)
    images, labels, samples = [], [], []
    for i in range(N_IMAGES):
        image, lab = disks_image(SIZE, seed=i + 1)
        sample = sample_points(lab, rng, max_positive=30, max_negative=15)
        if len(sample) != 45:
            raise SystemExit(f"image {i}: {len(sample)} prompts sampled, expected 45")
        images.append(image), labels.append(lab), samples.append(sample)
    tile, _ = disks_image(SIZE, seed=0)
    data = folder / "inputs.npz"
    np.savez(
        data, tile=tile, images=np.stack(images), labels=np.stack(labels),
        points=np.stack([s.points for s in samples]), positive=np.stack([s.positive for s in samples]),
        label_ids=np.stack([s.label_ids for s in samples]),
    )
    return weights, data


def run_worker(script: Path, args: list[str]) -> dict:
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, str(script), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"worker {args[:2]} failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, type=Path, help="local copy of github.com/Nuisal/cellseg1")
    ap.add_argument("--repeat", type=int, default=2, help="fresh processes per variant (best is kept)")
    ap.add_argument("--units", default="train,encoder,grid")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encode-batch", type=int, default=4, help="cellbench's batched variant")
    args = ap.parse_args()
    if not (args.reference / "cellseg1_train.py").is_file():
        raise SystemExit(f"{args.reference} is not a copy of Nuisal/cellseg1; make one with\n"
                         "  git clone --depth 1 https://github.com/Nuisal/cellseg1 /tmp/cellseg1_ref")
    print(f"load average at start: {os.getloadavg()}, {os.cpu_count()} CPUs, {args.threads} torch threads", flush=True)
    with tempfile.TemporaryDirectory(prefix="cellseg1-vs-ref-") as tmp:
        folder = Path(tmp)
        weights, data = make_inputs(folder)
        scripts = {}
        for side, text in (("cellbench", CELLBENCH_WORKER), ("reference", REFERENCE_WORKER)):
            scripts[side] = folder / f"{side}_worker.py"
            scripts[side].write_text(text)
        variants = []
        for unit in args.units.split(","):
            ref = [str(args.reference)]
            variants.append((unit, "reference", "same", "same allocator", ref))
            cb_extra = [["1"], [str(args.encode_batch)]] if unit == "train" else [[]]
            for i, extra in enumerate(cb_extra):
                label = f"encode_batch={extra[0]}" if extra else "defaults"
                variants.append((unit, "cellbench", "same", label, extra))
                if i == 0:
                    variants.append((unit, "reference", "shipped", "as shipped", ref))
        best: dict[tuple, dict] = {}
        for round_ in range(args.repeat):
            for unit, side, allocator, label, extra in variants:  # alternating sides within each round
                res = run_worker(scripts[side], [side, unit, str(weights), str(data), allocator,
                                                 str(args.threads), str(MEMORY_PY), *extra])
                key = (unit, side, label)
                print(f"round {round_ + 1} {unit:5s} {side:9s} {label:18s} wall {res['wall_s']:7.2f} s "
                      f"cpu {res['cpu_s']:7.2f} s peak RSS {res['peak_rss_mib']:7.0f} MiB "
                      f"load {res['load']:.1f} ({res['trainable']:,} LoRA parameters)", flush=True)
                if key not in best or res["wall_s"] < best[key]["wall_s"]:
                    best[key] = res  # the fastest run, with its own CPU time and peak RSS
    print(f"\nbest of {args.repeat} (ratio = reference / cellbench; > 1: cellbench faster or smaller)")
    for unit in args.units.split(","):
        refs = {k[2]: v for k, v in best.items() if k[0] == unit and k[1] == "reference"}
        for (u, side, label), cb in best.items():
            if u != unit or side != "cellbench":
                continue
            for ref_label, ref in refs.items():
                print(f"{unit:5s} cellbench {label:16s} vs reference {ref_label:15s}: "
                      f"wall {ref['wall_s']:.2f} / {cb['wall_s']:.2f} s = {ref['wall_s'] / cb['wall_s']:.2f}x, "
                      f"cpu {ref['cpu_s']:.2f} / {cb['cpu_s']:.2f} s = {ref['cpu_s'] / cb['cpu_s']:.2f}x, "
                      f"peak RSS {ref['peak_rss_mib']:.0f} / {cb['peak_rss_mib']:.0f} MiB "
                      f"= {ref['peak_rss_mib'] / cb['peak_rss_mib']:.2f}x "
                      f"(load {ref['load']:.1f} / {cb['load']:.1f})")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
