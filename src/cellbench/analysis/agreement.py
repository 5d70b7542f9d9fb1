"""Annotation agreement (Glioma C6 Table 3): annotation sets against each other and against a consensus.

Every pair of annotation sets is scored with :func:`cellbench.metrics.evaluate`
(optimal one-to-one matching, ap_dsb = TP / (TP + FP + FN) at IoU 0.5 / 0.75
/ 0.9, pooled over images and per image). The first set of a pair is the
**reference** (scored as ground truth): TP and ap_dsb do not depend on the
side, but FP and FN swap, and so do precision and recall. Each annotation
set and each prediction is also scored against a consensus, which is
given or built by :func:`build_consensus` (rule in :data:`CONSENSUS_RULE`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet
from cellbench.matching import overlaps_from_instances
from cellbench.metrics import GLIOMA_THRESHOLDS, Evaluation, evaluate

__all__ = [
    "CONSENSUS_RULE",
    "Agreement",
    "PairAgreement",
    "agreement",
    "build_consensus",
]

CONSENSUS_RULE = (
    "Built from the N annotation sets, image by image. Candidates are taken set by set (in the order given), "
    "each set in its annotation order, skipping instances already used. A candidate collects from every other "
    "set the unused instance with the highest IoU to it (ties: the earlier one) when that IoU is >= {iou}. "
    "It is kept when the candidate and its matches come from a strict majority of the sets (> N/2); "
    "the kept instance's mask is the pixels covered by a strict majority of those matched masks (candidate "
    "included; for two masks their intersection), its class the most frequent among them (ties: the "
    "candidate's), and the matched instances are used. A candidate that is not kept uses nothing."
)


def _group_mask(members: Sequence[Instance]) -> tuple[np.ndarray, tuple[int, int]]:
    boxes = np.array([m.bbox for m in members])
    y0, x0 = boxes[:, 0].min(), boxes[:, 1].min()
    count = np.zeros((boxes[:, 2].max() - y0, boxes[:, 3].max() - x0), dtype=np.int32)
    for m in members:
        iy0, ix0, iy1, ix1 = m.bbox
        count[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] += m.mask
    return count * 2 > len(members), (int(y0), int(x0))


def build_consensus(sets: Sequence[InstanceSet], *, iou: float = 0.5, name: str = "image") -> InstanceSet:
    """The consensus of several annotations of one image, by :data:`CONSENSUS_RULE`.

    Classes are the union of the sets' class names, in order of appearance.

    >>> a = InstanceSet.from_label_image(np.array([[1, 1, 0, 0], [1, 1, 0, 2]]))
    >>> b = InstanceSet.from_label_image(np.array([[1, 1, 0, 0], [1, 0, 0, 0]]))
    >>> c = InstanceSet.from_label_image(np.array([[0, 0, 0, 3], [0, 0, 0, 0]]))
    >>> cons = build_consensus([a, b, c])
    >>> len(cons), cons[0].area, cons[0].bbox
    (1, 3, (0, 0, 2, 2))
    """
    if not sets:
        raise DataError(f"image {name!r}: a consensus needs at least one annotation set")
    shapes = {tuple(s.shape) for s in sets}
    if len(shapes) > 1:
        raise DataError(f"image {name!r}: the annotation sets have different image shapes {sorted(shapes)}")
    n = len(sets)
    classes = tuple(dict.fromkeys(c for s in sets for c in s.classes))
    iou_of = {}
    for i in range(n):
        for j in range(i + 1, n):
            dense = overlaps_from_instances(sets[i], sets[j]).dense_iou()
            iou_of[i, j], iou_of[j, i] = dense, dense.T
    used = [np.zeros(len(s), dtype=bool) for s in sets]
    kept = []
    for i, s in enumerate(sets):
        for k in range(len(s)):
            if used[i][k]:
                continue
            group = [(i, k)]
            for j in range(n):
                if j == i or not len(sets[j]):
                    continue
                row = np.where(used[j], -1.0, iou_of[i, j][k])
                best = int(np.argmax(row))  # the first of equal maxima
                if row[best] >= iou:
                    group.append((j, best))
            if len(group) * 2 <= n:
                continue
            members = [sets[j][m] for j, m in group]
            mask, offset = _group_mask(members)
            if not mask.any():
                continue
            for j, m in group:
                used[j][m] = True
            names = Counter(sets[j].classes[sets[j][m].class_id] for j, m in group)
            top = max(names.values())
            cls = next(c for c, v in names.items() if v == top)  # Counter keeps insertion order: candidate first
            kept.append(Instance.from_mask(mask, offset=offset, class_id=classes.index(cls),
                                           source_id=f"{i}:{s[k].source_id}"))
    return InstanceSet(shape=sets[0].shape, instances=tuple(kept), classes=classes)


@dataclass(frozen=True)
class PairAgreement:
    """One set scored against a reference set; ``evaluation`` holds the counts per image and threshold."""

    reference: str
    other: str
    evaluation: Evaluation
    kind: Literal["annotation", "prediction"] = "annotation"

    def to_dict(self) -> dict:
        d = self.evaluation.to_dict()
        return {
            "reference": self.reference,
            "other": self.other,
            "kind": self.kind,
            "by_iou": d["pooled"],
            "image_mean": d["image_mean"],
            "per_image": d["per_image"],
        }


@dataclass(frozen=True)
class Agreement:
    """Every pair of annotation sets, and every set and prediction against the consensus."""

    thresholds: tuple[float, ...]
    images: tuple[str, ...]
    pairs: tuple[PairAgreement, ...]
    vs_consensus: tuple[PairAgreement, ...]
    consensus_rule: str
    consensus: Mapping[str, InstanceSet] = field(repr=False, default_factory=dict)
    settings: Mapping = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "iou_thresholds": list(self.thresholds),
            "images": list(self.images),
            "settings": dict(self.settings),
            "consensus_rule": self.consensus_rule,
            "consensus_instances": {name: len(s) for name, s in self.consensus.items()},
            "pairs": [p.to_dict() for p in self.pairs],
            "vs_consensus": [p.to_dict() for p in self.vs_consensus],
        }


def _score(reference: str, other: str, ref: Mapping[str, InstanceSet], oth: Mapping[str, InstanceSet],
           images: Sequence[str], thresholds: Sequence[float], kind: str = "annotation") -> PairAgreement:
    ev = evaluate([ref[n] for n in images], [oth[n] for n in images], names=list(images), thresholds=thresholds)
    return PairAgreement(reference, other, ev, kind)


def _check_images(named: Mapping[str, Mapping[str, InstanceSet]], images: Sequence[str]) -> None:
    for set_name, found in named.items():
        missing = sorted(set(images) - set(found))
        extra = sorted(set(found) - set(images))
        if missing or extra:
            raise DataError(f"images differ from the first annotation set's: missing {missing[:10]}, "
                            f"extra {extra[:10]}", path=set_name)


def agreement(
    annotations: Mapping[str, Mapping[str, InstanceSet]],
    *,
    consensus: Mapping[str, InstanceSet] | None = None,
    predictions: Mapping[str, Mapping[str, InstanceSet]] | None = None,
    thresholds: Sequence[float] = GLIOMA_THRESHOLDS,
    consensus_iou: float = 0.5,
) -> Agreement:
    """Score annotation sets ``{set name: {image: InstanceSet}}`` against each other and a consensus.

    Pairs are every ``(A_i, A_j)`` with ``i < j`` in the order given, ``A_i``
    the reference. Without ``consensus`` one is built by
    :func:`build_consensus` at ``consensus_iou``. Every set, the consensus and
    each prediction set must hold the same images (by name).
    """
    if not annotations:
        raise DataError("agreement needs at least one annotation set")
    names = list(annotations)
    images = tuple(sorted(annotations[names[0]]))
    _check_images(annotations, images)
    predictions = dict(predictions or {})
    _check_images(predictions, images)
    thresholds = tuple(float(t) for t in thresholds)
    if consensus is None:
        rule = CONSENSUS_RULE.format(iou=consensus_iou)
        consensus = {im: build_consensus([annotations[s][im] for s in names], iou=consensus_iou, name=im)
                     for im in images}
    else:
        rule = "given (not built)"
        _check_images({"consensus": consensus}, images)
    pairs = tuple(_score(names[i], names[j], annotations[names[i]], annotations[names[j]], images, thresholds)
                  for i in range(len(names)) for j in range(i + 1, len(names)))
    vs = [_score("consensus", s, consensus, annotations[s], images, thresholds) for s in names]
    vs += [_score("consensus", p, consensus, predictions[p], images, thresholds, "prediction") for p in predictions]
    settings = {
        "matching": "optimal one-to-one (Hungarian); TP when IoU >= t; ap_dsb = TP / (TP + FP + FN)",
        "reference": "scored as ground truth: FP are the other side's unmatched instances, FN the reference's",
        "by_iou": "pooled over images (TP, FP, FN summed, then the ratios)",
        "consensus_iou": consensus_iou,
    }
    return Agreement(thresholds, images, pairs, tuple(vs), rule, dict(consensus), settings)
