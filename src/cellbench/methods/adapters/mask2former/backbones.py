"""Mask2Former's backbones: a name a config may give -> the Hugging Face backbone config it stands for.

Every backbone gives feature maps at strides 4, 8, 16 and 32 (``stage1`` -
``stage4``), which Mask2Former's pixel decoder reads. They are Hugging Face
``transformers`` backbones (``SwinBackbone``, ``ResNetBackbone``), so the
published Mask2Former checkpoints in Hugging Face's layout load into the
whole network:

* ``resnet50``: ResNet-50, the backbone the 18-methods paper names for its
  Mask2Former row (MMDetection 2.28's ``mask2former_r50`` config);
* ``swin_t`` / ``swin_s``: Swin-T / Swin-S with Mask2Former's settings
  (stochastic depth 0.3, windows of 7): the Swin backbones of Mask2Former's
  own model zoo;
* ``swin_t_w48``: Swin-T's depths (2, 2, 6, 2) at half its width (48
  channels at stride 4, 3 to 24 heads of 16 channels): a Swin-T-shaped
  network for CPUs (the ``cpu`` preset), about a quarter of Swin-T's cost;
* ``tiny``: one block per stage, 16 channels: a random network for tests.

A new backbone is one line of :data:`REGISTRY`. This module imports no
torch and no transformers (configs validate :data:`BACKBONES` without them);
:func:`backbone_config` does.

>>> BACKBONES[:3], REGISTRY["resnet50"].paper
(('resnet50', 'swin_t', 'swin_s'), 'Mask2Former (ResNet-50)')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cellbench.errors import DataError

__all__ = ["BACKBONES", "REGISTRY", "Backbone", "backbone_config"]

#: The four outputs Mask2Former reads, strides 4 to 32.
OUT_FEATURES = ("stage1", "stage2", "stage3", "stage4")


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone.

    Attributes:
        family: ``swin`` (``transformers.SwinConfig``) or ``resnet`` (``transformers.ResNetConfig``).
        options: the config's keyword arguments, as pairs.
        prefix: what Hugging Face's image classifier of the same family puts before the backbone's own
            tensor names (``resnet.`` in ``ResNetForImageClassification``; none for Swin, whose backbone holds
            a ``swin`` model as the classifier does), removed from a backbone-only weights file's names.
        paper: the model this backbone stands for, if any.
    """

    family: Literal["swin", "resnet"]
    options: tuple[tuple[str, Any], ...] = ()
    prefix: str = ""
    paper: str | None = None


def _swin(embed_dim: int, depths: tuple[int, ...], heads: tuple[int, ...], drop_path: float, paper: str | None):
    return Backbone("swin", (("embed_dim", embed_dim), ("depths", list(depths)), ("num_heads", list(heads)),
                             ("window_size", 7), ("drop_path_rate", drop_path)), paper=paper)


#: Backbone name -> how to build it.
REGISTRY: dict[str, Backbone] = {
    # transformers' ResNetConfig defaults are ResNet-50's: bottleneck blocks 3, 4, 6, 3, widths 256-2048
    "resnet50": Backbone("resnet", (("depths", [3, 4, 6, 3]), ("layer_type", "bottleneck")), prefix="resnet.",
                         paper="Mask2Former (ResNet-50)"),
    "swin_t": _swin(96, (2, 2, 6, 2), (3, 6, 12, 24), 0.3, "Mask2Former (Swin-T)"),
    "swin_s": _swin(96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3, "Mask2Former (Swin-S)"),
    "swin_t_w48": _swin(48, (2, 2, 6, 2), (3, 6, 12, 24), 0.1, None),
    "tiny": _swin(16, (1, 1, 1, 1), (1, 2, 4, 8), 0.0, None),
}
BACKBONES: tuple[str, ...] = tuple(REGISTRY)


def backbone_config(name: str) -> Any:
    """The ``transformers`` config of backbone ``name`` (a ``SwinConfig`` or ``ResNetConfig``), its four
    stages as outputs.

    >>> backbone_config("swin_t").depths, backbone_config("swin_t").out_features
    ([2, 2, 6, 2], ['stage1', 'stage2', 'stage3', 'stage4'])
    """
    spec = REGISTRY.get(name)
    if spec is None:
        raise DataError(f"unknown Mask2Former backbone {name!r}; backbones: {', '.join(BACKBONES)}")
    from transformers import ResNetConfig, SwinConfig

    config_class = SwinConfig if spec.family == "swin" else ResNetConfig
    return config_class(**dict(spec.options), out_features=list(OUT_FEATURES))
