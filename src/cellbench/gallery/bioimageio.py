"""Export a Cellpose model directory as a bioimage.io model package (spec 0.5), with flow dynamics.

The package (a zip) holds ``rdf.yaml``, TorchScript weights and PyTorch
state-dict weights (each with its sha256), the architecture source for the
state dict, a test input and the test output it must give (``.npy``), a
cover image, ``documentation.md``, the citation of Cellpose, a licence and
the cellbench ``model.json`` as an attachment.

What the package computes, and how it matches ``cellbench predict``:

* input ``raw``: batch x channel x y x x, float32, the raw image. One
  channel for a grayscale model (Cellpose channels ``[0, 0]``; the network's
  second, nuclear, channel is zeros as in Cellpose), else the two channels
  Cellpose feeds the network (cytoplasm, nucleus);
* preprocessing ``scale_range`` with the 1st and 99th percentiles per
  channel: Cellpose's own normalisation. cellbench's percentile
  normalisation before it is an affine map, which Cellpose's normalisation
  undoes, so nothing else is needed; CLAHE cannot be written in spec 0.5
  and a model trained with it is refused;
* the network (:class:`CellposeFlows`): resize by ``diam_mean /
  diam_labels`` (or ``diam_mean / diameter``), pad to a multiple of 16, run
  the Cellpose 3 U-Net, crop and resize the flows and cell probability back;
* postprocessing ``cellpose_flow_dynamics`` (spec 0.5.12+, run by
  bioimage.io.core with the ``cellpose`` package) with the model's
  ``cellprob_threshold``, ``flow_threshold`` and ``min_size``: output
  ``labels``, uint16 instance labels.

Two differences from ``cellbench predict`` remain, both inside Cellpose's
``eval``: it runs the network on 224 px tiles with 10 % overlap (the package
runs it on the whole input, as bioimage.io tools tile by their own rules),
and it follows the flows for ``200 / rescale`` steps where the postprocessing
uses Cellpose's default 200. :func:`export_cellpose` measures the agreement
of the two on the test image and records it in the package's ``config``.

Offline: every file the package names is inside the zip and ``rdf.yaml``
names no URL, so ``bioimageio.core`` 0.11 validates it (checksums included)
and runs its tests without network access, with its default settings; the
test suite checks that with every non-local connection refused. (Where a
description does name URLs, ``BIOIMAGEIO_PERFORM_IO_CHECKS=false`` skips
fetching them.) Needs ``bioimageio.core`` >= 0.11 (spec 0.5.12, which added
``cellpose_flow_dynamics``) and pydantic < 2.14: pydantic 2.14 rejects a
serializer call of bioimageio.spec 0.5.12, which then fails on every model
description.

Other methods: StarDist has a postprocessing of its own in spec 0.5
(``stardist_postprocessing``) and TensorFlow / Keras weight formats, so a
StarDist model directory could be exported the same way; SAM-based CellSeg1
needs prompt-grid decoding and mask NMS, which no spec 0.5 postprocessing
expresses (only a ``custom`` Python op, which bioimage.io.core runs only on
explicit opt-in), and the watershed baseline has no network. Only Cellpose is
exported here.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cellbench import __version__
from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.methods.model_dir import MODEL_FILE, WEIGHTS_DIR, LoadedModel, load_model

__all__ = ["ARCHITECTURE_FILE", "EXPORTABLE", "export_bioimageio", "export_cellpose"]

#: Methods :func:`export_bioimageio` can export.
EXPORTABLE = ("cellpose",)
#: The architecture source shipped with the state-dict weights.
ARCHITECTURE_FILE = Path(__file__).with_name("bioimageio_cellpose_arch.py")

CELLPOSE_CITE = ("Stringer, C., Wang, T., Michaelos, M. & Pachitariu, M. Cellpose: a generalist algorithm for "
                 "cellular segmentation. Nature Methods 18, 100-106 (2021).", "10.1038/s41592-020-01018-x")


def _test_image(record: dict, given: str | Path | None) -> np.ndarray:
    from cellbench.data import read_dataset
    from cellbench.data.images import read_image

    if given is not None:
        return read_image(Path(given))
    source = (record.get("train") or {}).get("source") or {}
    try:
        dataset = read_dataset(source["path"], source["layout"], split=source.get("split"),
                               task=source.get("task") or "all")
        return dataset.samples[0].load_image()
    except (KeyError, IndexError, OSError, DataError) as exc:
        raise DataError(f"no test image: the training data recorded in model.json cannot be read ({exc}); "
                        f"pass --test-image") from exc


def _crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    y0, x0 = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return image[y0:y0 + size, x0:x0 + size]


def _network_input(image: np.ndarray, channels: Sequence[int]) -> np.ndarray:
    """C x H x W float32 of what Cellpose feeds the network, before normalisation (one channel for grayscale)."""
    image = np.asarray(image, dtype=np.float32)
    if tuple(channels) == (0, 0):
        gray = image if image.ndim == 2 else image.mean(axis=-1)
        return gray[None]
    if image.ndim != 3:
        raise DataError(f"the model uses Cellpose channels {list(channels)} but the test image has one channel")
    picked = [image[..., c - 1] if c > 0 else np.zeros(image.shape[:2], np.float32) for c in channels]
    return np.stack(picked).astype(np.float32)


def _scale_range(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """bioimage.io's ``scale_range`` (1st / 99th percentile per channel) on C x H x W."""
    lo = np.percentile(x, 1.0, axis=(1, 2), keepdims=True)
    hi = np.percentile(x, 99.0, axis=(1, 2), keepdims=True)
    return ((x - lo) / (hi - lo + eps)).astype(np.float32)


def _cover(image: np.ndarray, labels: np.ndarray) -> bytes:
    """A 2:1 PNG: the test image beside its labels (random colours)."""
    from PIL import Image

    g = image.astype(np.float64)
    lo, hi = np.percentile(g, (1, 99))
    gray = (np.clip((g - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    colours = np.random.default_rng(0).integers(60, 256, size=(int(labels.max()) + 1, 3)).astype(np.uint8)
    colours[0] = 0
    left = np.repeat(gray[..., None], 3, axis=-1)
    buf = io.BytesIO()
    Image.fromarray(np.concatenate([left, colours[labels]], axis=1)).save(buf, format="PNG")
    return buf.getvalue()


def _flow_masks(flows: np.ndarray, *, cellprob_threshold: float, flow_threshold: float, min_size: int) -> np.ndarray:
    """Cellpose's flow dynamics on 3 x H x W (dy, dx, cellprob), as the ``cellpose_flow_dynamics`` op runs it."""
    from cellpose.dynamics import compute_masks
    from cellpose.utils import fill_holes_and_remove_small_masks

    masks = compute_masks(flows[:2], flows[2], cellprob_threshold=cellprob_threshold,
                          flow_threshold=flow_threshold, do_3D=False)
    return fill_holes_and_remove_small_masks(masks, min_size=min_size).astype(np.uint16)


def export_bioimageio(model_dir: str | Path, out: str | Path, **options: Any) -> dict:
    """Export the model directory ``model_dir`` to bioimage.io package ``out`` (a .zip); see :func:`export_cellpose`.

    The model directory is loaded first (``model.json`` and every weight file
    checked, as ``cellbench predict`` checks them), so a damaged one is named
    for what is damaged before a good one of another method is refused.
    """
    loaded = load_model(model_dir)
    if loaded.name not in EXPORTABLE:
        raise DataError(f"bioimage.io export handles {', '.join(EXPORTABLE)} model directories; this is a "
                        f"{loaded.name!r} model (see cellbench.gallery.bioimageio for why)", path=model_dir)
    return export_cellpose(model_dir, out, loaded=loaded, **options)


def export_cellpose(
    model_dir: str | Path,
    out: str | Path,
    *,
    test_image: str | Path | None = None,
    name: str | None = None,
    licence: str = "CC-BY-4.0",
    authors: Sequence[str] = ("cellbench user",),
    description: str | None = None,
    test_size: int = 256,
    loaded: LoadedModel | None = None,
) -> dict:
    """Write a bioimage.io spec 0.5 package of a Cellpose model directory to ``out``; returns a summary.

    ``loaded`` is the model directory already loaded (it is loaded here otherwise).

    The test output is computed by the package's own pipeline (its
    TorchScript network and the flow dynamics), which ``bioimageio.core``'s
    ``test_model`` reproduces; the summary also says how far the package's
    labels agree with ``cellbench predict`` on the test image (F1 at IoU 0.5).
    """
    import torch

    from cellbench.gallery.bioimageio_cellpose_arch import CellposeFlows
    from cellbench.matching import match_labels, pooled
    from cellbench.methods.adapters.cellpose import WEIGHTS_FILE, read_cellpose_weights

    model_dir, out = Path(model_dir), Path(out)
    loaded = loaded if loaded is not None else load_model(model_dir)
    if loaded.name != "cellpose":
        raise DataError(f"not a Cellpose model directory (method {loaded.name!r})", path=model_dir)
    cfg = loaded.method.config
    if cfg.preprocess.clahe:
        raise DataError("the model was trained with CLAHE preprocessing, which bioimage.io spec 0.5 "
                        "preprocessing cannot express; retrain without clahe to export", path=model_dir)
    state = read_cellpose_weights(model_dir / WEIGHTS_DIR / WEIGHTS_FILE)
    diam_mean = float(state["diam_mean"].reshape(-1)[0])
    diam_labels = float(state["diam_labels"].reshape(-1)[0])
    rescale = diam_mean / (cfg.diameter if cfg.diameter else diam_labels)
    n_in = 1 if tuple(cfg.channels) == (0, 0) else 2
    net = CellposeFlows(diam_mean=diam_mean, rescale=rescale, in_channels=n_in)
    net.net.load_state_dict(state, strict=True)
    net.eval()

    image = _crop(_test_image(loaded.record, test_image), test_size)
    x = _network_input(image, cfg.channels)[None]  # 1 x C x H x W raw
    with torch.no_grad():
        flows = net(torch.from_numpy(_scale_range(x[0])[None]))[0].numpy()
    labels = _flow_masks(flows, cellprob_threshold=cfg.cellprob_threshold, flow_threshold=cfg.flow_threshold,
                         min_size=cfg.min_size)
    ours = loaded.predict(image)
    agreement = pooled([match_labels(_labels_of(ours), labels.astype(np.int32), (0.5,))[0]])

    name = name or f"cellbench cellpose {model_dir.resolve().name}"
    train = loaded.record.get("train") or {}
    summary = {
        "name": name, "method": "cellpose", "rescale": rescale, "diam_mean": diam_mean, "diam_labels": diam_labels,
        "input_channels": n_in, "test_shape": list(x.shape), "test_instances": int(labels.max()),
        "agreement_with_cellbench_predict": {"f1@0.5": agreement.f1, "tp": agreement.tp, "fp": agreement.fp,
                                             "fn": agreement.fn, "cellbench_instances": len(ours)},
    }
    with tempfile.TemporaryDirectory(prefix="cellbench-bioimageio-") as tmp:
        tmp = Path(tmp)
        torch.save(net.state_dict(), tmp / "cellpose_flows_state_dict.pt")
        with _torchscript_is_the_format():
            torch.jit.save(_torchscript(net), str(tmp / "cellpose_flows.torchscript.pt"))
        np.save(tmp / "test_input.npy", x)
        np.save(tmp / "test_output.npy", labels[None, None])
        (tmp / "cover.png").write_bytes(_cover(_network_input(image, cfg.channels)[0], labels))
        (tmp / "documentation.md").write_text(_documentation(summary, loaded.record, cfg))
        (tmp / "model.json").write_bytes((model_dir / MODEL_FILE).read_bytes())
        (tmp / ARCHITECTURE_FILE.name).write_bytes(ARCHITECTURE_FILE.read_bytes())
        descr = _describe(tmp, summary=summary, cfg=cfg, name=name, licence=licence, authors=authors,
                          description=description or _description(train), torch_version=torch.__version__)
        package = tmp / "package.zip"
        from bioimageio.spec import save_bioimageio_package

        save_bioimageio_package(descr, output_path=package)
        atomic_write_bytes(out, package.read_bytes())
    summary["package"] = str(out)
    return summary


def _torchscript(net):
    """``net`` as TorchScript: the U-Net traced (its layers take any size that is a multiple of 16), the
    resizing and padding around it scripted, so the module takes any input size."""
    import copy

    import torch

    module = copy.deepcopy(net)
    with torch.no_grad(), _torchscript_is_the_format():
        module.unet = torch.jit.trace(module.unet, torch.zeros(1, 2, 64, 64))
        return torch.jit.script(module)


@contextlib.contextmanager
def _torchscript_is_the_format():
    """torch deprecates TorchScript in favour of torch.export, but bioimage.io spec 0.5 names TorchScript as
    its self-contained torch format: its deprecation warnings say nothing to a user here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def _labels_of(instances) -> np.ndarray:
    from cellbench.instances import flatten, policy_from_name

    return flatten(instances, policy_from_name("priority-last")).labels.astype(np.int32)


def _description(train: dict) -> str:
    source = train.get("source") or {}
    return (f"Cellpose 3 network trained with cellbench on {train.get('n_images')} image(s) "
            f"({train.get('n_instances')} instances) of {Path(str(source.get('path', 'unknown'))).name}, "
            f"split {source.get('split')}, task {source.get('task')}; instance segmentation with Cellpose flow "
            f"dynamics.")


def _documentation(summary: dict, record: dict, cfg) -> str:
    agree = summary["agreement_with_cellbench_predict"]
    return f"""# {summary['name']}

A Cellpose 3 model trained and exported by cellbench {__version__}
(method version {record.get('method_version')}, trained with cellbench {record.get('cellbench_version')}).

## Input
`raw`: batch x channel x y x x, float32, raw intensities; {summary['input_channels']} channel(s)
({'grayscale' if summary['input_channels'] == 1 else 'Cellpose channels ' + str(list(cfg.channels))}).
Preprocessing: `scale_range` with the 1st and 99th percentile of each channel (Cellpose's normalisation).

## Network
The Cellpose 3 U-Net (2 input channels, the second zeros for grayscale). Inside the model the image is
resized by {summary['rescale']:.4f} (diam_mean {summary['diam_mean']:.1f} /
diameter {summary['diam_mean'] / summary['rescale']:.2f})
and padded to a multiple of 16; flows (dy, dx) and the cell probability logit come back at the input size.

## Output
`labels`: uint16 instance labels from the `cellpose_flow_dynamics` postprocessing
(cellprob_threshold {cfg.cellprob_threshold}, flow_threshold {cfg.flow_threshold}, min_size {cfg.min_size});
it needs the `cellpose` package (3.x) where the model runs.

## Agreement with cellbench
`cellbench predict` runs the network on 224 px tiles with 10 % overlap and follows the flows for 200 / rescale
steps; this package runs the whole input and 200 steps. On the test image ({summary['test_shape'][2]} x
{summary['test_shape'][3]} px) the package's labels match cellbench's at IoU 0.5 with F1 {agree['f1@0.5']:.3f}
({agree['tp']} matched, {agree['fp']} only here, {agree['fn']} only in cellbench).

## Training
Full cellbench record: the attached `model.json` (config, training data summary, history, weight checksums).

## Cite
{CELLPOSE_CITE[0]} doi:{CELLPOSE_CITE[1]}
"""


def _describe(tmp: Path, *, summary: dict, cfg, name: str, licence: str, authors: Sequence[str], description: str,
              torch_version: str):
    from bioimageio.spec.model import v0_5 as v

    n_in = summary["input_channels"]
    raw = v.TensorId("raw")
    spatial_in = [v.SpaceInputAxis(id=v.AxisId(a), size=v.ParameterizedSize(min=64, step=16)) for a in ("y", "x")]
    inputs = [v.InputTensorDescr(
        id=raw,
        axes=[v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier(c) for c in
                                                           (["gray"] if n_in == 1 else ["cytoplasm", "nucleus"])]),
              *spatial_in],
        test_tensor=v.FileDescr(source=tmp / "test_input.npy"),
        data=v.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[v.ScaleRangeDescr(kwargs=v.ScaleRangeKwargs(axes=[v.AxisId("y"), v.AxisId("x")],
                                                                   min_percentile=1.0, max_percentile=99.0))],
    )]
    spatial_out = [v.SpaceOutputAxis(id=v.AxisId(a), size=v.SizeReference(tensor_id=raw, axis_id=v.AxisId(a)))
                   for a in ("y", "x")]
    outputs = [v.OutputTensorDescr(
        id=v.TensorId("labels"),
        axes=[v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier("labels")]), *spatial_out],
        test_tensor=v.FileDescr(source=tmp / "test_output.npy"),
        data=v.IntervalOrRatioDataDescr(type="uint16"),
        postprocessing=[v.CellposeFlowDynamicsDescr(kwargs=v.CellposeFlowDynamicsKwargs(
            cellprob_threshold=float(cfg.cellprob_threshold), flow_threshold=float(cfg.flow_threshold),
            do_3D=False, min_size=int(cfg.min_size), output_dtype="uint16"))],
    )]
    kwargs = {"diam_mean": summary["diam_mean"], "rescale": summary["rescale"], "in_channels": n_in}
    state_dict = v.PytorchStateDictWeightsDescr(
        source=tmp / "cellpose_flows_state_dict.pt",
        architecture=v.ArchitectureFromFileDescr(source=tmp / ARCHITECTURE_FILE.name, callable="CellposeFlows",
                                                 kwargs=kwargs),
        pytorch_version=v.Version(torch_version.split("+")[0]),
    )
    torchscript = v.TorchscriptWeightsDescr(source=tmp / "cellpose_flows.torchscript.pt",
                                            pytorch_version=v.Version(torch_version.split("+")[0]),
                                            parent="pytorch_state_dict")
    return v.ModelDescr(
        name=name,
        description=description,
        authors=[v.Author(name=a) for a in authors],
        cite=[v.CiteEntry(text=CELLPOSE_CITE[0], doi=v.Doi(CELLPOSE_CITE[1]))],
        license=v.LicenseId(licence),
        documentation=v.FileDescr(source=tmp / "documentation.md"),
        covers=[v.FileDescr(source=tmp / "cover.png")],
        tags=["cellpose", "instance-segmentation", "cells", "2d", "cellbench"],
        inputs=inputs,
        outputs=outputs,
        weights=v.WeightsDescr(pytorch_state_dict=state_dict, torchscript=torchscript),
        attachments=[v.FileDescr(source=tmp / "model.json")],
        config={"cellbench": {"version": __version__, **{k: summary[k] for k in (
            "rescale", "diam_mean", "diam_labels", "agreement_with_cellbench_predict")}}},
    )
