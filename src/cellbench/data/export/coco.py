"""COCO instance json with RLE masks (and ``score`` when instances have one)."""

from __future__ import annotations

from collections.abc import Iterable

from cellbench.data.dataset import Sample
from cellbench.instances import instance_to_rle

__all__ = ["to_coco"]


def to_coco(samples: Iterable[Sample], classes: tuple[str, ...], *, info: dict | None = None) -> dict:
    """A COCO dataset dict; category ``k + 1`` is ``classes[k]``, annotation order is instance order.

    Soma keeps supercategory ``cell_part`` (as in Glioma C6), so the file reads
    back with the ``glioma-c6`` layout too.
    """
    images, annotations = [], []
    for image_id, sample in enumerate(samples, start=1):
        h, w = sample.instances.shape
        file_name = sample.image_path.name if sample.image_path is not None else f"{sample.name}.tif"
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        for inst in sample.instances:
            y0, x0, y1, x1 = inst.bbox
            ann = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": inst.class_id + 1,
                "segmentation": instance_to_rle(inst, (h, w)),
                "area": inst.area,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": 0,
            }
            if inst.score is not None:
                ann["score"] = inst.score
            annotations.append(ann)
    categories = [
        {"id": k + 1, "name": name, "supercategory": "cell_part" if name == "soma" else "cell"}
        for k, name in enumerate(classes)
    ]
    return {"info": dict(info or {}), "images": images, "annotations": annotations, "categories": categories}
