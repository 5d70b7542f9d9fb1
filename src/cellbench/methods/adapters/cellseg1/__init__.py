"""CellSeg1: Segment Anything fine-tuned with LoRA from one annotated image.

Modules, in pipeline order: :mod:`~.backbones` (SAM ViT-B/L/H from a file,
LiteMedSAM from its package, a tiny random SAM for tests), :mod:`~.lora`
(the PEFT strategy), :mod:`~.prompts` (interior point sampling; point or box
prompts at prediction), :mod:`~.augment`, :mod:`~.train`, :mod:`~.inference`
(point grid, scores, thresholds), :mod:`~.nms` (two-stage mask NMS) and :mod:`~.method` (the
:class:`~.method.CellSeg1` method). Nothing here is imported until used, so
``cellbench.methods`` stays free of torch.
"""

__all__: list[str] = []
