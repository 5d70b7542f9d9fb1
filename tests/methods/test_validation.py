"""The one validation score (pooled F1@0.5) gives exactly what the methods computed by hand before it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blob_sample

from cellbench.data.dataset import Sample
from cellbench.instances import Instance, InstanceSet, flatten, policy_from_name
from cellbench.matching import match, match_labels, overlaps_from_instances, pooled
from cellbench.methods.validation import pooled_f1, validation_f1
from cellbench.methods.adapters.watershed import WatershedConfig, WatershedMethod


def _overlapping(seed: int) -> Sample:
    """Blobs plus two instances that overlap others: the flattened and the overlapping GT differ."""
    s = blob_sample(seed)
    extra = []
    for inst in list(s.instances)[:2]:
        mask = np.zeros(s.instances.shape, bool)
        mask[inst.slices] = inst.mask
        extra.append(Instance.from_mask(np.roll(mask, 3, axis=1)))
    return Sample(s.name, s.instances.replace(instances=(*s.instances, *extra)), array=s.array)


def _noisy(labels: np.ndarray, seed: int) -> np.ndarray:
    """A prediction: the labels shifted, one dropped, one spurious square."""
    rng = np.random.default_rng(seed)
    out = np.roll(labels, int(rng.integers(0, 3)), axis=0).astype(np.int32)
    out[out == 1] = 0
    out[:6, :6] = out.max() + 1
    return out


SAMPLES = [_overlapping(seed) for seed in (1, 2, 3)]


@pytest.mark.parametrize("policy", ["priority-last", "priority-first"])
def test_flattened_equals_the_hand_written_score(policy):
    predict = {s.name: _noisy(flatten(s.instances, policy_from_name(policy)).labels, k) for k, s in enumerate(SAMPLES)}
    by_name = {id(s.array): s.name for s in SAMPLES}

    def predictor(image):
        return predict[by_name[id(image)]]

    # what cellpose, watershed, semantic, mediar and nnunet wrote
    old = pooled(match_labels(flatten(s.instances, policy_from_name(policy)).labels, predictor(s.load_image()),
                              (0.5,))[0] for s in SAMPLES).f1
    assert 0 < old < 1
    assert validation_f1(SAMPLES, predictor, flatten_policy=policy) == old
    # stardist: pairs of label images
    pairs = [(flatten(s.instances, policy_from_name(policy)).labels, predictor(s.array)) for s in SAMPLES]
    assert pooled_f1(pairs) == pooled(match_labels(t, p, (0.5,))[0] for t, p in pairs).f1


def test_overlap_equals_the_hand_written_score():
    predictions = {s.name: InstanceSet.from_label_image(_noisy(flatten(s.instances).labels, k))
                   for k, s in enumerate(SAMPLES)}
    by_name = {id(s.array): s.name for s in SAMPLES}

    def predictor(image):
        return predictions[by_name[id(image)]]

    # what sam and maskrcnn wrote
    old = pooled([match(overlaps_from_instances(s.instances, predictor(s.load_image())), (0.5,))[0]
                  for s in SAMPLES]).f1 or 0.0
    flat = validation_f1(SAMPLES, lambda image: flatten(predictor(image)).labels)
    assert 0 < old < 1 and old != flat  # the overlapping instances count here
    assert validation_f1(SAMPLES, predictor, ground_truth="overlap") == old


def test_mixed_or_unknown_inputs_are_refused():
    labels = flatten(SAMPLES[0].instances).labels
    with pytest.raises(TypeError, match="two label images or two InstanceSets"):
        pooled_f1([(labels, SAMPLES[0].instances)])
    with pytest.raises(ValueError, match="ground_truth"):
        validation_f1(SAMPLES, lambda image: labels, ground_truth="both")


def test_a_method_records_the_helpers_score(blobs):
    method = WatershedMethod(WatershedConfig(sigmas=(1.0,), threshold_scales=(1.0,), distance_sigmas=(1.0,),
                                             min_distance_fractions=(0.25,)))
    history = method.train(blobs["train"], blobs["valid"])
    by_hand = pooled(match_labels(flatten(s.instances).labels, method._labels(s.load_image()), (0.5,))[0]
                     for s in blobs["valid"]).f1
    assert history.epochs[-1].val_score == by_hand
