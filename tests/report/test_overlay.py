import numpy as np

from cellbench.instances import Instance, InstanceSet
from cellbench.report import draw_outlines, normalize_for_display


def test_outlines_of_overlapping_instances_are_both_drawn():
    image = np.arange(100, dtype=np.uint16).reshape(10, 10)
    a = Instance(np.ones((5, 5), bool), (0, 0, 5, 5), class_id=0)
    b = Instance(np.ones((5, 5), bool), (3, 3, 8, 8), class_id=1)
    rgb = draw_outlines(image, InstanceSet((10, 10), (a, b), classes=("x", "y")), colors=((0, 0, 255), (255, 0, 0)))
    assert rgb.shape == (10, 10, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (0, 0, 255)  # a's border
    assert tuple(rgb[7, 7]) == (255, 0, 0)  # b's border
    assert tuple(rgb[3, 3]) == (255, 0, 0)  # inside a, on b's border
    assert tuple(rgb[4, 4]) == (0, 0, 255)  # on a's border, inside b: b's interior does not hide it
    assert tuple(rgb[2, 2]) == (rgb[2, 2, 0],) * 3  # a's interior stays grey


def test_normalize_two_channel_image_to_rgb():
    img = np.random.default_rng(0).random((4, 5, 2))
    out = normalize_for_display(img)
    assert out.shape == (4, 5, 3) and (out[..., 0] == 0).all()
