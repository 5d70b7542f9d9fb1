"""A crafted model directory of any method is refused, naming its file, before any code it carries can run.

Whoever shares a model directory writes every file in it, model.json's checksums
included (a checksum is no signature). Each crafted directory here holds a payload
that would write a marker file if it ran: a pickle whose unpickling calls ``exec``,
Python source where weights belong (``torch.load(weights_only=True)`` reads a string),
or a name a library would import, look up or evaluate. Every one must be refused with
a DataError naming the offending file, and the marker must not exist afterwards.
nnU-Net (its checkpoint's weights, its plans, and the reported attack) is in
test_nnunet_model_folder.py.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import marshal
from collections.abc import Callable
from pathlib import Path

import pytest

from cellbench.methods.model_dir import MODEL_FILE, WEIGHTS_DIR

torch = pytest.importorskip("torch")

from crafted_model_dirs import Exec, payload, refused, torch_bytes, write_model_dir  # noqa: E402


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "marker"


# -- every torch method: its weight file holds a pickle, Python source, or a non-tensor among tensors --------------
def _tiny_identity() -> dict:
    from cellbench.methods.adapters.cellseg1.backbones import tiny_sam

    return {**tiny_sam(input_size=64).identity, "prompt": "point", "box_half_side": None}


#: method -> (modules it needs, config, its weight files given the weights file's bytes, the weights file)
TORCH_METHODS: dict[str, tuple[tuple[str, ...], dict, Callable[[bytes], dict], str]] = {
    "cellpose": (("cellpose",), {}, lambda w: {"cellpose_model.pth": w}, "cellpose_model.pth"),
    "unet": (("monai",), {}, lambda w: {"unet.pt": w}, "unet.pt"),
    "maunet": (("monai", "segmentation_models_pytorch"), {"backbone": "resnet18"}, lambda w: {"maunet.pt": w},
               "maunet.pt"),
    "mediar": (("segmentation_models_pytorch",), {"encoder": "mit_b0"}, lambda w: {"mediar_model.pth": w},
               "mediar_model.pth"),
    "maskrcnn": (("torchvision",), {"backbone": "resnet18"},
                 lambda w: {"maskrcnn.json": {"classes": ["cell"], "backbone": "resnet18"}, "maskrcnn.pt": w},
                 "maskrcnn.pt"),
    **{name: (("torchvision",), {"backbone": "resnet18"},
              lambda w, name=name: {f"{name}.json": {"classes": ["cell"], "backbone": "resnet18"}, f"{name}.pt": w},
              f"{name}.pt") for name in ("msrcnn", "cascade", "solov2", "retinamask", "centermask2")},
    "cellseg1": (("segment_anything",), {"backbone": "tiny", "input_size": 64},
                 lambda w: {"cellseg1.json": _tiny_identity(), "weights.pt": w}, "weights.pt"),
    "yolo": ((), {"model_size": "n"}, lambda w: {"yolo.json": {"classes": ["cell"], "model_size": "n",
                                                                "yaml": YOLO11N_SEG}, "yolo.pt": w}, "yolo.pt"),
}

#: Ultralytics' yolo11-seg.yaml at scale n, one class, as a trained model records it.
_ROWS = [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 2, "C3k2", [256, False, 0.25]],
         [-1, 1, "Conv", [256, 3, 2]], [-1, 2, "C3k2", [512, False, 0.25]], [-1, 1, "Conv", [512, 3, 2]],
         [-1, 2, "C3k2", [512, True]], [-1, 1, "Conv", [1024, 3, 2]], [-1, 2, "C3k2", [1024, True]],
         [-1, 1, "SPPF", [1024, 5]], [-1, 2, "C2PSA", [1024]]]
_HEAD = [[-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 6], 1, "Concat", [1]], [-1, 2, "C3k2", [512, False]],
         [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 4], 1, "Concat", [1]], [-1, 2, "C3k2", [256, False]],
         [-1, 1, "Conv", [256, 3, 2]], [[-1, 13], 1, "Concat", [1]], [-1, 2, "C3k2", [512, False]],
         [-1, 1, "Conv", [512, 3, 2]], [[-1, 10], 1, "Concat", [1]], [-1, 2, "C3k2", [1024, True]],
         [[16, 19, 22], 1, "Segment", ["nc", 32, 256]]]
YOLO11N_SEG = {"nc": 1, "scales": {"n": [0.5, 0.25, 1024], "s": [0.5, 0.5, 1024], "m": [0.5, 1.0, 512],
                                   "l": [1.0, 1.0, 512], "x": [1.0, 1.5, 512]},
               "backbone": _ROWS, "head": _HEAD, "scale": "n", "yaml_file": "yolo11n-seg.yaml", "channels": 3}


def _needs(modules: tuple[str, ...]) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {missing}")


def _weights(kind: str, marker: Path) -> bytes:
    if kind == "pickle":  # a torch zip whose pickle calls exec (what weights_only=False would run)
        return torch_bytes({"conv.weight": torch.zeros(1), "payload": Exec(payload(marker))})
    if kind == "source":  # Python source where the weights belong: weights_only reads a string
        return torch_bytes(payload(marker))
    if kind == "mixed":  # tensors and one string among them
        return torch_bytes({"conv.weight": torch.zeros(1), "conv.bias": payload(marker)})
    if kind == "nested":  # a state dict in a list: nothing a loader may hand on
        return torch_bytes([{"conv.weight": torch.zeros(1)}, payload(marker)])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["pickle", "source", "mixed", "nested"])
@pytest.mark.parametrize("method", sorted(TORCH_METHODS))
def test_weights_that_are_not_tensors_are_refused(tmp_path, marker, method, kind):
    needs, config, files, weights_file = TORCH_METHODS[method]
    _needs(needs)
    weights = _weights(kind, marker)
    folder = write_model_dir(tmp_path / "m", method, files(weights), config=config)
    error = refused(folder, marker, folder / WEIGHTS_DIR / weights_file)
    wanted = "pickled Python objects" if kind == "pickle" else "not a state dict of tensors"
    assert wanted in str(error)


# -- model.json: the method and its config ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["builtins:exec", "cellbench.methods.adapters.watershed:WatershedMethod", "os.system",
                                  "__import__"])
def test_model_json_picks_only_a_registered_method(tmp_path, marker, name):
    folder = write_model_dir(tmp_path / "m", name, {"watershed_params.json": {}}, version="1")
    assert "unknown method" in str(refused(folder, marker, folder / MODEL_FILE))


@pytest.mark.parametrize(("method", "config", "says"), [
    ("watershed", {"flatten": {"module": "builtins", "class_name": "exec"}}, "flatten"),
    ("watershed", {"unknown_field": 1}, "unknown"),
    ("maunet", {"backbone": "tu-hf-hub:someone/encoder"}, "backbone"),
    ("nnunet", {"trainer": "nnUNetTrainerEvil"}, "trainer"),
    ("mediar", {"encoder": "tu-hf-hub:someone/encoder"}, "encoder"),
    ("maskrcnn", {"backbone": "builtins.exec"}, "backbone"),
    ("yolo", {"model_size": "../x"}, "model_size"),
])
def test_a_config_outside_the_method_s_choices_names_model_json(tmp_path, marker, method, config, says):
    folder = write_model_dir(tmp_path / "m", method, {"weights.bin": b"\0"}, config=config)
    assert says in str(refused(folder, marker, folder / MODEL_FILE))


# -- files that are JSON: YOLO's yaml, StarDist's config, SAM's calibration, watershed's parameters ----------------
def _yolo_dir(tmp_path: Path, yaml_dict: object, marker: Path) -> Path:
    weights = torch_bytes({"model.0.conv.weight": torch.zeros(1)})
    info = {"classes": ["cell"], "model_size": "n", "yaml": yaml_dict}
    return write_model_dir(tmp_path / "m", "yolo", {"yolo.json": info, "yolo.pt": weights},
                           config={"model_size": "n"})


def _with_row(section: str, row: list) -> dict:
    yaml_dict = copy.deepcopy(YOLO11N_SEG)
    yaml_dict[section] = [row, *yaml_dict[section][1:]]
    return yaml_dict


@pytest.mark.parametrize(("make", "says"), [
    # Ultralytics' parse_model evaluates `activation` with eval()
    (lambda m: {**YOLO11N_SEG, "activation": f"exec({payload(m)!r}) or nn.SiLU()"}, "activation"),
    # module names are looked up in ultralytics.nn.tasks' globals: its unrestricted checkpoint loaders are there
    (lambda m: _with_row("backbone", [-1, 1, "attempt_load_one_weight", [str(m.with_suffix(".pt"))]]), "module"),
    (lambda m: _with_row("head", [-1, 1, "torch_safe_load", [str(m)]]), "module"),
    (lambda m: _with_row("backbone", [-1, 1, "TorchVision", [64, "resnet18", "DEFAULT", True]]), "module"),
    (lambda m: _with_row("backbone", [-1, 1, "torchvision.ops.misc.Conv2dNormActivation", [3]]), "module"),
    (lambda m: _with_row("backbone", [-1, 1, "Conv", [{"class_name": "exec", "config": payload(m)}]]), "args"),
    (lambda m: _with_row("backbone", ["exec", 1, "Conv", [64, 3, 2]]), "from"),
    (lambda m: {**YOLO11N_SEG, "nc": payload(m)}, "nc"),
    (lambda m: [YOLO11N_SEG], "mapping"),
])
def test_a_yolo_yaml_naming_anything_but_ultralytics_layers_is_refused(tmp_path, marker, make, says):
    """Checked before Ultralytics is imported: these run without it."""
    folder = _yolo_dir(tmp_path, make(marker), marker)
    assert says in str(refused(folder, marker, folder / WEIGHTS_DIR / "yolo.json"))


def test_ultralytics_own_yaml_passes_the_check():
    from cellbench.methods.adapters.yolo.model_yaml import check_model_yaml

    assert check_model_yaml(YOLO11N_SEG)["nc"] == 1
    pytest.importorskip("ultralytics")
    from cellbench.methods.adapters.yolo.runtime import build_network

    for size in "nsmlx":  # every size cellbench trains, as Ultralytics records the yaml in the model it builds
        model = build_network(f"yolo11{size}-seg.yaml", ("cell", "nucleus"))
        check_model_yaml(model.yaml)


def _lambda_config(marker: Path) -> dict:
    """A Keras serialised lambda: marshalled code that Keras rebuilds into a function when it deserialises."""
    code = compile(payload(marker), "<model>", "exec")
    return {"class_name": "__lambda__", "config": {"code": base64.b64encode(marshal.dumps(code)).decode(),
                                                    "defaults": None, "closure": None}}


@pytest.mark.parametrize(("key", "value"), [
    ("unet_activation", "lambda"),
    ("unet_last_activation", {"module": "builtins", "class_name": "exec", "config": "x", "registered_name": "exec"}),
    ("unet_activation", "os.system"),
    ("train_checkpoint", "../../outside.h5"),
    ("train_reduce_lr", {"factor": {"class_name": "__lambda__"}}),
    ("grid", [2, {"class_name": "__lambda__"}]),
])
def test_a_stardist_config_that_is_not_plain_values_is_refused(tmp_path, marker, key, value):
    pytest.importorskip("stardist")
    from stardist.models import Config2D

    config = Config2D(n_rays=8, grid=(2, 2), n_channel_in=1, unet_n_depth=1, unet_n_filter_base=4,
                      net_conv_after_unet=4, train_tensorboard=False)
    values = json.loads(json.dumps(vars(config), default=lambda v: list(v) if isinstance(v, tuple) else v.item()))
    values[key] = _lambda_config(marker) if value == "lambda" else value
    files = {"config.json": values, "thresholds.json": {"prob": 0.5, "nms": 0.4}, "stardist.weights.h5": b"\0"}
    folder = write_model_dir(tmp_path / "m", "stardist", files)
    assert key in str(refused(folder, marker, folder / WEIGHTS_DIR / "config.json"))


@pytest.mark.parametrize("box_half_side", ["exec", [1], -3, True])
def test_sam_and_cellseg1_calibration_is_a_number(tmp_path, marker, box_half_side):
    pytest.importorskip("segment_anything")
    identity = {**_tiny_identity(), "box_half_side": box_half_side}
    folder = write_model_dir(tmp_path / "sam", "sam", {"sam.json": identity},
                             config={"backbone": "tiny", "input_size": 64})
    refused(folder, marker, folder / WEIGHTS_DIR / "sam.json")
    folder = write_model_dir(tmp_path / "cellseg1", "cellseg1", {"cellseg1.json": identity, "weights.pt": b"\0"},
                             config={"backbone": "tiny", "input_size": 64})
    refused(folder, marker, folder / WEIGHTS_DIR / "cellseg1.json")


@pytest.mark.parametrize("params", [{"sigma": "exec"}, {"bright": 1}, {"min_size": [3]}, ["sigma"],
                                    {"__class__": "exec"}])
def test_watershed_parameters_are_plain_numbers(tmp_path, marker, params):
    folder = write_model_dir(tmp_path / "m", "watershed", {"watershed_params.json": params})
    refused(folder, marker, folder / WEIGHTS_DIR / "watershed_params.json")
