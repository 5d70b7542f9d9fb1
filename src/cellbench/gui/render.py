"""What the browser shows: images as PNG, instances as SVG outlines drawn over them.

Each instance is its own SVG path (its traced pixel outline), stroked in its
class colour over a light fill of the same colour, so two overlapping instances
stay visibly distinct: both outlines are drawn whole and the shared pixels look
darker. The colours are the report's (:data:`cellbench.report.overlay.CLASS_COLORS`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from cellbench.instances import InstanceSet
from cellbench.instances.polygons import trace_outline
from cellbench.report.overlay import CLASS_COLORS, normalize_for_display

__all__ = ["ERROR_COLORS", "class_color", "error_kinds", "instances_svg", "png_bytes"]

ERROR_COLORS = {"tp": (60, 220, 60), "fp": (255, 60, 60), "fn": (255, 200, 0)}
"""FP / FN map colours: matched (true positive) green, false positive red, false negative (missed GT) yellow."""


def class_color(class_id: int) -> str:
    r, g, b = CLASS_COLORS[class_id % len(CLASS_COLORS)]
    return f"#{r:02x}{g:02x}{b:02x}"


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit PNG of any image (percentile-stretched as the report draws it)."""
    from PIL import Image

    shown = normalize_for_display(image)
    if shown.ndim == 3 and shown.shape[-1] > 3:
        shown = shown[..., :3]
    buf = io.BytesIO()
    Image.fromarray(shown).save(buf, format="PNG")
    return buf.getvalue()


def _path(instance) -> str:
    y0, x0 = instance.bbox[:2]
    parts = []
    for exterior, holes in trace_outline(instance.mask):
        for ring in (exterior, *holes):
            pts = " L".join(f"{x + x0},{y + y0}" for x, y in ring)
            parts.append(f"M{pts} Z")
    return " ".join(parts)


def instances_svg(instances: InstanceSet, *, colors: Sequence[str] | None = None, width: float = 1.5,
                  fill_opacity: float = 0.18, ids: str = "inst") -> str:
    """SVG paths (one per instance, in the image's pixel frame) for an ``interactive_image`` overlay.

    ``colors`` gives one colour per instance; by default each instance has its class colour.
    """
    out = []
    for k, inst in enumerate(instances):
        color = colors[k] if colors is not None else class_color(inst.class_id)
        out.append(f'<path id="{ids}-{k}" d="{_path(inst)}" fill="{color}" fill-opacity="{fill_opacity}" '
                   f'fill-rule="evenodd" stroke="{color}" stroke-width="{width}" vector-effect="non-scaling-stroke"/>')
    return "".join(out)


def error_kinds(gt: InstanceSet, pred: InstanceSet, *, threshold: float = 0.5) -> tuple[list[str], list[str]]:
    """Per GT instance ``tp`` / ``fn`` and per predicted instance ``tp`` / ``fp`` at IoU ``threshold``,
    by cellbench's one matching rule (:func:`cellbench.matching.match_pairs`).

    >>> from cellbench.instances import InstanceSet
    >>> a = np.zeros((10, 10), np.int32); a[1:5, 1:5] = 1; a[6:9, 6:9] = 2
    >>> b = np.zeros((10, 10), np.int32); b[1:5, 1:5] = 1; b[0:2, 7:9] = 2
    >>> error_kinds(InstanceSet.from_label_image(a), InstanceSet.from_label_image(b))
    (['tp', 'fn'], ['tp', 'fp'])
    """
    from cellbench.matching import match_pairs, overlaps_from_instances

    ov = overlaps_from_instances(gt, pred)
    hits = match_pairs(ov, threshold)
    gt_kind, pred_kind = ["fn"] * len(gt), ["fp"] * len(pred)
    for g, p in zip(ov.gt_index[hits].tolist(), ov.pred_index[hits].tolist()):
        gt_kind[g], pred_kind[p] = "tp", "tp"
    return gt_kind, pred_kind
