"""The detection family on torchvision: one home for the backbones, the loop and one module per head.

* :mod:`.backbones`: backbone name -> feature extractor (torchvision ResNets,
  timm's Swin, ResNeSt, Res2Net, HRNet, VoVNetV2); a new backbone is one line there.
* :mod:`.fpn`: a timm feature extractor as a backbone, and the FPN on top.
* :mod:`.config`: the settings every detector's config shares (backbone, weights, the loop).
* :mod:`.weights`: pretrained files, a whole detector's or a backbone's alone.
* :mod:`.targets`: training crops and their targets (overlaps kept).
* :mod:`.training`: the one training loop.
* :mod:`.inference`: detection and mask pasting at prediction.
* one module per architecture: :mod:`.maskrcnn` (method ``maskrcnn``),
  :mod:`.msrcnn` (``msrcnn``, Mask Scoring R-CNN) and :mod:`.cascade`
  (``cascade``, Cascade Mask R-CNN), their RoI heads beside them
  (:mod:`.maskiou_head`, :mod:`.cascade_heads`); the single-stage :mod:`.solov2`
  (``solov2``, SOLOv2), its head and Matrix NMS beside it (:mod:`.solov2_head`,
  :mod:`.matrix_nms`); the single-stage :mod:`.retinamask` (``retinamask``,
  RetinaMask), RetinaNet's dense head and the mask head beside it
  (:mod:`.retinanet_head`, :mod:`.retinamask_head`); the single-stage
  :mod:`.centermask` (``centermask2``, CenterMask), its network and heads beside
  it (:mod:`.centermask_net`, :mod:`.fcos_head`, :mod:`.sag_mask_head`).

Importing this package, :mod:`.backbones` and :mod:`.config` needs no torch (a
config validates its backbone without it); the other modules do.
"""

from __future__ import annotations

from cellbench.methods.adapters.detection.backbones import BACKBONES

__all__ = ["BACKBONES"]
