"""The NeurIPS-2022 boundary rule, pixel by pixel: which instances touch the frame."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.instances import Instance, InstanceSet
from cellbench.metrics import drop_boundary, touches_frame

from .helpers import random_instances

SHAPE = (20, 30)


def _frame(shape: tuple[int, int], px: int) -> np.ndarray:
    frame = np.ones(shape, bool)
    frame[px : shape[0] - px, px : shape[1] - px] = False
    return frame


def _pixel(y: int, x: int) -> Instance:
    return Instance.from_mask(np.ones((1, 1), bool), offset=(y, x))


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right"])
@pytest.mark.parametrize("distance", [0, 1, 2, 3])
def test_a_pixel_touches_the_frame_when_it_is_closer_than_px(side, distance):
    h, w = SHAPE
    y, x = {"top": (distance, 15), "bottom": (h - 1 - distance, 15),
            "left": (10, distance), "right": (10, w - 1 - distance)}[side]
    for px in range(5):
        assert touches_frame(_pixel(y, x), SHAPE, px) is (distance < px), (side, distance, px)


def test_px_zero_keeps_everything_and_returns_the_same_set():
    s = InstanceSet(SHAPE, (_pixel(0, 0), _pixel(19, 29)))
    assert not touches_frame(s[0], SHAPE, 0)
    assert drop_boundary(s, 0) is s


def test_the_pixels_decide_not_the_bbox():
    # One pixel at (10, 15) in a bbox spanning the whole 20 x 30 image: 9 px from the bottom edge, more elsewhere.
    m = np.zeros(SHAPE, bool)
    m[10, 15] = True
    inst = Instance(mask=m, bbox=(0, 0, *SHAPE))
    assert not touches_frame(inst, SHAPE, 9) and touches_frame(inst, SHAPE, 10)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("px", [1, 2, 4])
def test_random_instances_equal_the_full_frame_rule(seed, px):
    s = random_instances(np.random.default_rng(seed), shape=SHAPE, n=12, scores=True, n_classes=2)
    expected = [bool((inst.to_full(SHAPE) & _frame(SHAPE, px)).any()) for inst in s]
    assert [touches_frame(inst, SHAPE, px) for inst in s] == expected
    kept = drop_boundary(s, px)
    survivors = [inst for inst, touching in zip(s, expected) if not touching]
    # Survivors are the very instances (class, score, order kept); the set keeps shape and classes.
    assert [id(i) for i in kept] == [id(i) for i in survivors]
    assert kept.shape == s.shape and kept.classes == s.classes


def test_an_instance_covering_the_whole_image_touches_every_frame():
    whole = Instance.from_mask(np.ones(SHAPE, bool))
    assert all(touches_frame(whole, SHAPE, px) for px in (1, 2, 10))
    assert len(drop_boundary(InstanceSet(SHAPE, (whole,)), 1)) == 0
