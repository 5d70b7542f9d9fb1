"""Mask2Former (method ``mask2former``) on Hugging Face ``transformers``, one module per part.

* :mod:`.backbones`: backbone name -> Hugging Face backbone config (ResNet-50, Swin-T / Swin-S, a half-width
  Swin-T for CPUs); a new backbone is one line there.
* :mod:`.config`: the method's settings (:class:`~.config.Mask2FormerConfig`).
* :mod:`.network`: the network and its losses, both ``transformers``'.
* :mod:`.targets`: training crops as Mask2Former's targets (overlaps kept).
* :mod:`.training`: the training loop (Mask2Former's AdamW recipe).
* :mod:`.inference`: per-query masks and scores -> instances.
* :mod:`.weights`: weights files, whole or backbone only, read without pickles.
* :mod:`.method`: the :class:`~cellbench.methods.base.Method` (:class:`~.method.Mask2FormerMethod`).

Importing this package, :mod:`.backbones` and :mod:`.config` needs neither torch nor transformers (a config
validates without them); the other modules do.
"""

from __future__ import annotations

from cellbench.methods.adapters.mask2former.backbones import BACKBONES

__all__ = ["BACKBONES"]
