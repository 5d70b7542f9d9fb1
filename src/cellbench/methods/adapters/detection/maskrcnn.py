"""``maskrcnn``: torchvision's Mask R-CNN (v2 heads) trained on instances as they are annotated.

The 18-methods benchmark's largest family is two-stage detectors; Mask R-CNN
is its root. Unlike Cellpose or StarDist it predicts one mask per detected
box, so it trains on overlapping ground truth without flattening (Glioma C6
cells overlap) and predicts overlapping instances; and it classifies each
box, so ONE model learns every class of a task (``supports_classes``: Glioma
C6 cell type A and B) where single-class methods need one model per class.

* Network: :func:`build_network`, ``maskrcnn_resnet50_fpn_v2``'s heads on
  ``backbone`` with an FPN (:mod:`~cellbench.methods.adapters.detection.backbones`):
  ``resnet50`` as published, ``resnet18`` / ``resnet34`` for CPUs, and the
  18-methods benchmark's Mask R-CNN backbones ``swin_t`` / ``swin_s``
  (Swin-T / Swin-S, its two best methods), ``resnest50`` (ResNeSt),
  ``res2net50`` / ``res2net101`` (Res2Net) and ``hrnet_w32`` (HRNet).
  The v2 heads (a box head of four convolutions and one fully connected
  layer, batch norm in it, the mask head and the FPN) are those of the
  ResNeSt detection configs (detectron2-ResNeSt, MMDetection); MMDetection's
  Swin, Res2Net and HRNet Mask R-CNN configs have a box head of two fully
  connected layers and no norm in the FPN, and HRNet an HRFPN instead.
* Weights: from scratch, or ``pretrained``: a file path, or a name of the
  pretrained-model registry (:mod:`cellbench.pretrained`, checksum-verified
  downloads; torchvision's own unverified download is never used). A whole
  detector's file (COCO weights fit backbone ``resnet50``) loads with its
  class-specific last layers re-initialised for the task's classes; an
  ImageNet classifier's file (timm's or torchvision's) loads into the
  backbone alone (:mod:`~cellbench.methods.adapters.detection.weights`).
* Training: :func:`~cellbench.methods.adapters.detection.training.train_detector`:
  random square crops (``patch_size``) with flips and 90-degree rotations,
  every instance in the crop a target (overlaps kept); SGD or AdamW with
  linear warm-up and cosine decay. ``scale`` resizes images by a fixed factor
  for the network (torchvision's default resizes every image to 800 px, which
  makes small nuclei large and a CPU slow).
* Prediction: detections with score >= ``score_threshold`` (the scores are the
  detection scores, which COCO metrics rank by), up to
  ``detections_per_image``; masks pasted at ``mask_threshold``. Large images
  go through cellbench's tiling (``default_tiling``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.methods.base import Method, ProgressFactory, TrainHistory
from cellbench.methods.checkpoint import train_fingerprint
from cellbench.methods.adapters.detection.backbones import BACKBONES
from cellbench.methods.adapters.detection.config import DetectorConfig
from cellbench.methods.device import on_config_threads
from cellbench.methods.preprocess import preprocess
from cellbench.methods.seeding import seed_torch
from cellbench.methods.training import training_classes
from cellbench.methods.validation import tiled_overlap_f1

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MaskRCNNConfig", "MaskRCNNMethod", "NetworkSettings", "box_head_v2", "build_network", "mask_head_v2"]

#: Parameters that depend on the number of classes: not taken from a checkpoint trained on other classes.
CLASS_HEADS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


@dataclass(frozen=True)
class MaskRCNNConfig(DetectorConfig):
    """Mask R-CNN settings (torchvision's names where it has one): the family's
    (:class:`~cellbench.methods.adapters.detection.config.DetectorConfig`: backbone, pretrained, the training
    loop, preprocess, threads), and

    Attributes:
        anchor_sizes: anchor side (px, at network scale) per FPN level P2-P6.
        score_threshold: detections below this score are dropped.
        mask_threshold: mask probability a pixel needs.
        nms_threshold: box NMS IoU within a class (torchvision's ``box_nms_thresh``).
        cross_class_nms: box NMS IoU across classes (None: off), so a cell is not output once per class.
        detections_per_image: at most this many instances per image (tile).
        rpn_post_nms: region proposals kept per image at prediction.
        roi_batch_size: proposals sampled per training image for the box and mask heads (torchvision's
            ``box_batch_size_per_image``, 512); the v2 box head's four convolutions run on each, so on a CPU
            this sets the cost of a step (128: four times cheaper).
        head_width: channels of the box and mask heads' convolutions (256 as published; 128 costs about a
            third on a CPU).
    """

    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    nms_threshold: float = 0.5
    cross_class_nms: float | None = 0.7
    detections_per_image: int = 3000
    rpn_post_nms: int = 3000
    roi_batch_size: int = 512
    head_width: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.anchor_sizes) != 5:
            raise ValueError(f"anchor_sizes needs 5 sizes (FPN levels P2-P6), got {list(self.anchor_sizes)}")
        if min(self.detections_per_image, self.rpn_post_nms, self.roi_batch_size, self.head_width) < 1:
            raise ValueError("detections_per_image, rpn_post_nms, roi_batch_size and head_width must be >= 1")


@dataclass(frozen=True)
class NetworkSettings:
    """What :func:`build_network` needs; a subset of the method's config."""

    backbone: str
    num_classes: int  # including background
    trainable_layers: int
    anchor_sizes: tuple[int, ...]
    detections_per_image: int
    rpn_post_nms: int
    roi_batch_size: int
    score_threshold: float
    nms_threshold: float
    head_width: int = 256


def build_network(s: NetworkSettings, *, roi_heads: Callable[[int], nn.Module] | None = None) -> nn.Module:
    """A randomly initialised Mask R-CNN with v2 heads on ``s.backbone`` (torchvision's initialisation).

    It follows ``torchvision.models.detection.maskrcnn_resnet50_fpn_v2`` (Li et
    al. 2021, "Benchmarking detection transfer learning with vision
    transformers"): a two-convolution RPN head, a box head of four 3 x 3
    convolutions and one fully connected layer, and a four-convolution mask
    head, all with batch norm. With ``resnet50`` it is exactly torchvision's
    network, so the COCO checkpoint loads into it. On a CPU the heads, not the
    backbone, cost most with a ResNet: each sampled region goes through four
    3 x 3 convolutions in the box head (and each positive one through four more
    at 14 x 14 in the mask head), so ``head_width`` (256 as published) can be
    lowered there.

    ``roi_heads``: the heads of another two-stage detector (Cascade Mask
    R-CNN), built from the backbone's channel count after the backbone and the
    RPN head; torchvision's ``MaskRCNN`` then holds the backbone, the RPN and
    the transform around them, and the Mask R-CNN heads are never built.
    """
    from torch import nn
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, RPNHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    from cellbench.methods.adapters.detection.backbones import build_backbone

    if len(s.anchor_sizes) != 5:
        raise DataError(f"anchor_sizes needs one size per FPN level (5), got {list(s.anchor_sizes)}")
    backbone = build_backbone(s.backbone, trainable_layers=s.trainable_layers)
    anchors = AnchorGenerator(tuple((int(a),) for a in s.anchor_sizes), ((0.5, 1.0, 2.0),) * 5)
    rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
    width = s.head_width
    other = roi_heads(backbone.out_channels) if roi_heads is not None else None
    if other is None:
        box_head: nn.Module = box_head_v2(backbone.out_channels, width)
        mask_head: nn.Module = mask_head_v2(backbone.out_channels, width)
        # given here, not by MaskRCNN, which assumes 256 channels (torchvision's own layer sizes otherwise)
        box_predictor: nn.Module = FastRCNNPredictor(1024, s.num_classes)
        mask_predictor: nn.Module = MaskRCNNPredictor(width, width, s.num_classes)
    else:  # placeholders, replaced by `other` below
        box_head = mask_head = box_predictor = mask_predictor = nn.Identity()
    model = MaskRCNN(
        backbone, num_classes=None, box_predictor=box_predictor, rpn_anchor_generator=anchors, rpn_head=rpn_head,
        box_head=box_head, mask_head=mask_head, mask_predictor=mask_predictor,
        rpn_pre_nms_top_n_train=2 * s.rpn_post_nms, rpn_post_nms_top_n_train=s.rpn_post_nms,
        rpn_pre_nms_top_n_test=2 * s.rpn_post_nms, rpn_post_nms_top_n_test=s.rpn_post_nms,
        box_detections_per_img=s.detections_per_image, box_score_thresh=s.score_threshold,
        box_nms_thresh=s.nms_threshold, box_batch_size_per_image=s.roi_batch_size,
        # cellbench normalises images itself (percentile); the network sees them as they are
        image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
    )
    if other is not None:
        model.roi_heads = other
    return model


def box_head_v2(in_channels: int, width: int) -> nn.Module:
    """The v2 box head: four 3 x 3 convolutions of ``width`` channels with batch norm on 7 x 7 RoI features, then
    one fully connected layer of 1024 (``maskrcnn_resnet50_fpn_v2``'s with ``width`` 256)."""
    from torch import nn
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead

    return FastRCNNConvFCHead((in_channels, 7, 7), [width] * 4, [1024], norm_layer=nn.BatchNorm2d)


def mask_head_v2(in_channels: int, width: int) -> nn.Module:
    """The v2 mask head: four 3 x 3 convolutions of ``width`` channels with batch norm on 14 x 14 RoI features."""
    from torch import nn
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads

    return MaskRCNNHeads(in_channels, [width] * 4, 1, norm_layer=nn.BatchNorm2d)


class MaskRCNNMethod(Method):
    """Mask R-CNN (torchvision, v2 heads): overlapping, classified instances; one model for all classes.

    The other two-stage detectors of the family (:mod:`.msrcnn`, :mod:`.cascade`) subclass it: they set
    ``name``, ``Config``, the heads of :attr:`class_heads` / :attr:`new_heads` and override :meth:`_new_model`;
    training, validation, prediction and the model directory (``<name>.pt``, ``<name>.json``) are this class's.
    """

    name = "maskrcnn"
    version = "1"
    #: The architecture's name in its paper, for messages (the 18-methods benchmark's row: "Mask RCNN").
    paper: ClassVar[str] = "Mask R-CNN"
    description = (f"Mask R-CNN (torchvision v2 heads) on an FPN backbone ({', '.join(BACKBONES)}; swin_t / swin_s "
                   "are the 18-methods paper's Swin-T / Swin-S): overlapping instances, several classes in one model")
    requires = ("torch", "torchvision")
    extra = "maskrcnn"
    Config = MaskRCNNConfig
    #: One model learns every class of a task (the runner trains single-class methods once per class).
    supports_classes: ClassVar[bool] = True
    #: ``cpu``: ResNet-18-FPN on 256 px crops, AdamW: trains from scratch in minutes on 2 CPU cores.
    presets = {"cpu": {"backbone": "resnet18", "patch_size": 256, "batch_size": 2, "optimizer": "adamw",
                       "lr": 0.0005, "weight_decay": 0.0001, "epochs": 30, "rpn_post_nms": 1000,
                       "roi_batch_size": 128}}
    resumable = True
    #: Parameter-name prefixes that depend on the number of classes: re-initialised when a pretrained file was
    #: trained on other classes.
    class_heads: ClassVar[tuple[str, ...]] = CLASS_HEADS
    #: Parameter-name prefixes of the heads a Mask R-CNN file lacks (a head the subclass adds): a whole Mask
    #: R-CNN's file loads without them, and they keep their initialisation.
    new_heads: ClassVar[tuple[str, ...]] = ()
    #: What training minimises, for the history's ``info``.
    loss_text: ClassVar[str] = "RPN objectness + box, RoI classifier + box, mask BCE (torchvision Mask R-CNN)"

    def __init__(self, config: MaskRCNNConfig | None = None) -> None:
        super().__init__(config)
        self._model: Any = None
        self._classes: tuple[str, ...] = ("cell",)
        self._weights_from: dict = {"from": "scratch"}

    # -- building ---------------------------------------------------------------
    def _settings(self, n_classes: int) -> NetworkSettings:
        cfg = self.config
        return NetworkSettings(
            backbone=cfg.backbone, num_classes=n_classes + 1, trainable_layers=cfg.trained_layers,
            anchor_sizes=tuple(cfg.anchor_sizes), detections_per_image=cfg.detections_per_image,
            rpn_post_nms=cfg.rpn_post_nms, roi_batch_size=cfg.roi_batch_size, score_threshold=cfg.score_threshold,
            nms_threshold=cfg.nms_threshold, head_width=cfg.head_width,
        )

    def _new_model(self, n_classes: int) -> Any:
        """A new network for ``n_classes`` classes (a detector of this family overrides this)."""
        return build_network(self._settings(n_classes))

    @property
    def _files(self) -> tuple[str, str]:
        """The weights file and the info file in a model directory: ``<name>.pt``, ``<name>.json``."""
        return f"{self.name}.pt", f"{self.name}.json"

    def _input(self, image: np.ndarray) -> np.ndarray:
        from cellbench.methods.adapters.detection.targets import to_rgb

        return to_rgb(preprocess(image, self.config.preprocess))

    def _require_model(self) -> Any:
        if self._model is None:
            raise DataError(f"{self.name}: train or load weights before predicting")
        return self._model

    # -- the interface -------------------------------------------------------------
    @on_config_threads
    def train(
        self,
        train: Sequence[Sample],
        valid: Sequence[Sample] | None = None,
        *,
        seed: int = 0,
        progress: ProgressFactory | None = None,
        checkpoint_dir: Path | None = None,
    ) -> TrainHistory:
        """Fit on random crops of ``train`` (all classes in one model); keep the best validated epoch.
        With ``checkpoint_dir``, every epoch is saved there and a saved one continued."""
        from cellbench.methods.adapters.detection.training import train_detector
        from cellbench.methods.adapters.detection.weights import load_pretrained, resolve_weights

        classes = training_classes(self.name, train)
        cfg = self.config
        seed_torch(seed)
        rng = np.random.default_rng(seed)
        model = self._new_model(len(classes))
        self._classes = tuple(classes)
        self._weights_from = {"from": "scratch"}
        if cfg.pretrained:
            loaded = load_pretrained(model, resolve_weights(cfg.pretrained, method=self.name),
                                     class_heads=self.class_heads, new_heads=self.new_heads,
                                     hint="; COCO weights need backbone resnet50")
            self._weights_from = loaded | {"name": cfg.pretrained}
        self._model = model
        images = [self._input(s.load_image()) for s in train]
        history = train_detector(
            model, images, [s.instances for s in train], cfg, rng=rng, name=self.name,
            validate=(lambda: tiled_overlap_f1(self, valid)) if valid else None, checkpoint_dir=checkpoint_dir,
            fingerprint=train_fingerprint(self, train, valid, seed) if checkpoint_dir is not None else None,
            progress=progress)
        return dataclasses.replace(history, info={
            **self._weights_from, "classes": list(self._classes), **history.info, "loss": self.loss_text})

    @on_config_threads
    def predict(self, image: np.ndarray) -> InstanceSet:
        """Detected instances of one image (a tile), scored by the detector, overlaps and classes kept."""
        from cellbench.methods.adapters.detection.inference import detect

        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise DataError(f"image must be H x W or H x W x C, got shape {image.shape}")
        cfg = self.config
        found = detect(self._require_model(), self._input(image), scale=cfg.scale,
                       mask_threshold=cfg.mask_threshold, cross_class_nms=cfg.cross_class_nms)
        instances = tuple(d.instance.replace(class_id=d.label) for d in found)
        return InstanceSet(shape=image.shape[:2], instances=instances, classes=self._classes)

    def save_weights(self, folder: Path) -> None:
        """``<name>.pt`` (the network's state dict; ``maskrcnn.pt``) and ``<name>.json`` (classes, backbone,
        origin)."""
        import torch

        model = self._require_model()
        weights_file, info_file = self._files
        torch.save(model.state_dict(), Path(folder) / weights_file)
        info = {"classes": list(self._classes), "backbone": self.config.backbone, "weights": self._weights_from}
        (Path(folder) / info_file).write_text(json.dumps(info, indent=2))

    def load_weights(self, folder: Path) -> None:
        from cellbench.methods.adapters.detection.weights import read_info, read_state_dict

        weights_file, info_file = self._files
        info, classes = read_info(Path(folder) / info_file, paper=self.paper, backbone=self.config.backbone)
        path = Path(folder) / weights_file
        state = read_state_dict(path, what=f"{self.paper} weights file")
        model = self._new_model(len(classes))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise DataError(f"weights do not fit this {self.paper} ({str(exc).splitlines()[0]})", path=path) from exc
        model.eval()
        self._model, self._classes = model, classes
        self._weights_from = dict(info.get("weights") or {})
