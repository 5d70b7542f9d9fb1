"""The shared pieces of unet / maunet: targets, patches, post-processing, normalisation, sliding windows."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from cellbench.methods.adapters.semantic.inference import InferenceSettings, SemanticPreprocess, network_input
from cellbench.methods.adapters.semantic.patches import AugmentSettings, random_patch
from cellbench.methods.adapters.semantic.postprocess import interior_watershed, saltfish_watershed, scored_instances
from cellbench.methods.adapters.semantic.targets import BOUNDARY, INTERIOR, center_weight_map, drop_small, three_class_map
from cellbench.methods.adapters.semantic.train_loop import TrainSettings

NO_AUGMENT = AugmentSettings(zoom_prob=0.0, flip_prob=0.0, rotate_prob=0.0, intensity_prob=0.0)


def two_touching_squares() -> np.ndarray:
    labels = np.zeros((20, 30), np.int32)
    labels[2:18, 2:14] = 1
    labels[2:18, 14:28] = 2
    return labels


def test_three_class_map_puts_a_boundary_between_touching_cells():
    m = three_class_map(two_touching_squares())
    assert set(np.unique(m)) == {0, INTERIOR, BOUNDARY}
    assert (m[:, 13:15][2:18] == BOUNDARY).all()  # the shared edge, both sides
    assert (m[10, 4:12] == INTERIOR).all() and (m[10, 16:26] == INTERIOR).all()
    assert m[0, 0] == 0 and m[1, 5] == BOUNDARY  # the 1 px dilation spills outside the cell
    # every interior pixel lies in a cell
    assert (two_touching_squares()[m == INTERIOR] > 0).all()


def test_scaled_boundaries_grow_with_the_cell():
    labels = np.zeros((120, 120), np.int32)
    labels[10:110, 10:110] = 1  # area 10000: ceil(100 / 40) = 3 px
    fixed, scaled = three_class_map(labels), three_class_map(labels, width="scaled")
    assert (fixed[60, 10:13] == [BOUNDARY, BOUNDARY, INTERIOR]).all()
    assert (scaled[60, 10:15] == [BOUNDARY] * 4 + [INTERIOR]).all()


def test_tiny_interiors_become_background():
    labels = np.zeros((12, 12), np.int32)
    labels[3:9, 3:9] = 1  # interior 2 x 2 after a 2 px boundary ring: under 16 px
    m = three_class_map(labels)
    assert not (m == INTERIOR).any() and (m[3:9, 3:9][m[3:9, 3:9] != BOUNDARY] == 0).all()


def test_center_weight_is_one_at_every_cell_centre_whatever_its_size():
    labels = np.zeros((80, 80), np.int32)
    rr, cc = disk((20, 20), 6)
    labels[rr, cc] = 1
    rr, cc = disk((50, 50), 20, shape=labels.shape)
    labels[rr, cc] = 2
    w = center_weight_map(labels, three_class_map(labels))
    assert w[20, 20] == pytest.approx(1.0) and w[50, 50] == pytest.approx(1.0)
    assert (w[labels == 0] == 0).all() and (w[labels > 0] > 0).all() and w.max() <= 1.0
    # the falloff is scaled by sqrt(area): the same distance from the centre costs a small cell more
    assert w[20, 25] < w[50, 55]


def test_drop_small_keeps_pieces_of_the_size():
    mask = np.zeros((5, 10), bool)
    mask[0, 0:3] = True
    mask[3:5, 5:7] = True
    assert drop_small(mask, 4).sum() == 4 and drop_small(mask, 3).sum() == 7 and not drop_small(mask, 5).any()


def test_patch_without_augmentation_is_the_image():
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    classes = (np.arange(32 * 32).reshape(32, 32) % 3).astype(np.uint8)
    patch = random_patch(image, classes, None, size=32, aug=NO_AUGMENT, rng=np.random.default_rng(1))
    assert np.array_equal(patch.image, np.moveaxis(image, -1, 0)) and np.array_equal(patch.classes, classes)
    assert patch.regression is None


def test_patches_pad_small_images_and_keep_targets_aligned():
    image = np.zeros((20, 24, 3), np.float32)
    image[5:10, 5:12] = 1.0
    classes = np.zeros((20, 24), np.uint8)
    classes[5:10, 5:12] = INTERIOR
    rng = np.random.default_rng(3)
    for zoom_prob in (0.0, 1.0):
        aug = AugmentSettings(zoom_prob=zoom_prob, zoom_min=0.8, zoom_max=1.5, intensity_prob=0.0)
        for _ in range(8):
            patch = random_patch(image, classes, classes.astype(np.float32), size=32, aug=aug, rng=rng)
            assert patch.image.shape == (3, 32, 32) and patch.classes.shape == (32, 32)
            assert set(np.unique(patch.classes)) <= {0, INTERIOR}
            # the same geometric changes hit image and targets: bright pixels are the interior ones
            # (exactly without zoom; zooming resizes the image bilinearly and the classes by nearest pixel)
            bright, inside = patch.image[0] > 0.5, patch.classes == INTERIOR
            assert np.array_equal(bright, inside) if zoom_prob == 0 else iou(bright, inside) > 0.6
            assert np.array_equal(patch.regression > 0.5, bright) if zoom_prob == 0 else True


def test_patches_are_reproducible_from_the_generator_seed():
    image = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    classes = np.zeros((40, 40), np.uint8)
    a = random_patch(image, classes, None, size=32, aug=AugmentSettings(), rng=np.random.default_rng(7))
    b = random_patch(image, classes, None, size=32, aug=AugmentSettings(), rng=np.random.default_rng(7))
    assert np.array_equal(a.image, b.image)


def two_cell_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Probability maps of two touching disks (interior cores, a boundary between them) and their labels."""
    labels = np.zeros((40, 60), np.int32)
    for k, centre in enumerate(((20, 20), (20, 38)), start=1):
        rr, cc = disk(centre, 10, shape=labels.shape)
        labels[rr, cc] = np.where(labels[rr, cc] == 0, k, labels[rr, cc])
    classes = three_class_map(labels)
    p_interior = np.where(classes == INTERIOR, 0.9, 0.05)
    p_background = np.where(labels > 0, 0.05, 0.9)
    return labels, p_background, p_interior, center_weight_map(labels, classes)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_interior_watershed_separates_touching_cells_and_gives_back_their_boundaries():
    labels, p_bg, p_int, _ = two_cell_maps()
    found = interior_watershed(p_bg, p_int)
    assert found.max() == 2
    for k in (1, 2):
        best = max(iou(labels == k, found == j) for j in (1, 2))
        assert best > 0.9
    assert interior_watershed(p_bg, p_int, min_size=10_000).max() == 0
    assert interior_watershed(np.ones_like(p_bg), np.zeros_like(p_int)).max() == 0


def test_saltfish_watershed_finds_both_cells():
    labels, p_bg, p_int, distance = two_cell_maps()
    found = saltfish_watershed(p_bg, p_int, distance)
    assert found.max() == 2
    for k in (1, 2):
        assert max(iou(labels == k, found == j) for j in (1, 2)) > 0.85
    assert saltfish_watershed(p_bg, np.zeros_like(p_int), distance).max() == 0


def test_scores_are_mean_interior_probabilities():
    labels, p_bg, p_int, _ = two_cell_maps()
    found = scored_instances(interior_watershed(p_bg, p_int), p_int)
    assert len(found) == 2 and all(0.05 < inst.score < 0.9 for inst in found)


def test_network_input_makes_three_clipped_channels():
    gray = np.arange(100, dtype=np.uint16).reshape(10, 10)
    x = network_input(gray, SemanticPreprocess())
    assert x.shape == (10, 10, 3) and x.dtype == np.float32 and x.min() == 0 and x.max() == 1
    assert np.array_equal(x[..., 0], x[..., 2])
    assert network_input(np.zeros((4, 4, 2)), SemanticPreprocess()).shape == (4, 4, 3)
    assert network_input(np.zeros((4, 4, 4)), SemanticPreprocess()).shape == (4, 4, 3)


def test_sliding_windows_of_a_pointwise_network_equal_the_whole_image():
    torch = pytest.importorskip("torch")
    pytest.importorskip("monai")
    from cellbench.methods.adapters.semantic.inference import predict_maps

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 2, kernel_size=1)
    image = np.random.default_rng(0).random((50, 70, 3)).astype(np.float32)
    maps = predict_maps(net, image, roi=32, settings=InferenceSettings(overlap=0.25))
    with torch.no_grad():
        direct = net(torch.from_numpy(np.moveaxis(image, -1, 0))[None])[0].numpy()
    assert maps.shape == (2, 50, 70) and np.allclose(maps, direct, atol=1e-5)
    # an image smaller than half a window: padded (reflecting as often as needed), the maps cut back
    small = predict_maps(net, image[:10, :12], roi=64, settings=InferenceSettings())
    assert small.shape == (2, 10, 12) and np.allclose(small, direct[:, :10, :12], atol=1e-5)
    assert predict_maps(net, image[:10, :12], roi=64, settings=InferenceSettings(scales=(0.5, 1.5))).shape == \
        (2, 10, 12)


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="patch_size"):
        TrainSettings(patch_size=8)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        TrainSettings(steps_per_epoch=0)
    with pytest.raises(ValueError, match="overlap"):
        InferenceSettings(overlap=1.0)
    with pytest.raises(ValueError, match="zoom"):
        AugmentSettings(zoom_min=2.0, zoom_max=1.0)
    assert TrainSettings(batch_size=8).steps(20) == 3 and TrainSettings(steps_per_epoch=5).steps(1) == 5
