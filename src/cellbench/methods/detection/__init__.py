"""The detection family on torchvision: one home for the backbones, the loop and one module per head.

* :mod:`.backbones`: backbone name -> feature extractor with its FPN
  (torchvision ResNets); a new backbone is one line there.
* :mod:`.weights`: pretrained files.
* :mod:`.targets`: training crops and their targets (overlaps kept).
* :mod:`.training`: the one training loop.
* :mod:`.inference`: detection and mask pasting at prediction.
* one module per architecture: :mod:`.maskrcnn` (method ``maskrcnn``).

Importing this package and :mod:`.backbones` needs no torch (a config
validates its backbone without it); the other modules do.
"""

from __future__ import annotations

from cellbench.methods.detection.backbones import BACKBONES

__all__ = ["BACKBONES"]
