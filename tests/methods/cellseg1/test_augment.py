import numpy as np

from cellbench.methods.adapters.cellseg1.augment import AugmentConfig, augment


def _data():
    lab = np.zeros((64, 64), np.int32)
    lab[10:30, 10:30] = 3
    lab[40:60, 35:60] = 7
    img = np.stack([lab * 30] * 3, -1).astype(np.uint8)
    return img, lab


def test_shapes_ids_and_determinism():
    img, lab = _data()
    a = augment(img, lab, np.random.default_rng(5), out_size=48)
    b = augment(img, lab, np.random.default_rng(5), out_size=48)
    assert a[0].shape == (48, 48, 3) and a[0].dtype == np.uint8 and a[1].shape == (48, 48)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for seed in range(20):
        _, out = augment(img, lab, np.random.default_rng(seed), out_size=48)
        assert set(np.unique(out)) <= {0, 3, 7}


def test_identity_when_everything_is_off():
    img, lab = _data()
    cfg = AugmentConfig(brightness_contrast_p=0, flip_p=0, crop_scale=(1, 1), crop_ratio=(1, 1), shift_scale_rotate_p=0)
    out_img, out_lab = augment(img, lab, np.random.default_rng(0), out_size=64, config=cfg)
    assert np.array_equal(out_lab, lab) and np.array_equal(out_img, img)


def test_flip_only_flips():
    img, lab = _data()
    cfg = AugmentConfig(brightness_contrast_p=0, flip_p=1, crop_scale=(1, 1), crop_ratio=(1, 1), shift_scale_rotate_p=0)
    seen = set()
    for seed in range(12):
        _, out = augment(img, lab, np.random.default_rng(seed), out_size=64, config=cfg)
        for name, f in (("h", lab[:, ::-1]), ("v", lab[::-1]), ("hv", lab[::-1, ::-1])):
            if np.array_equal(out, f):
                seen.add(name)
    assert seen == {"h", "v", "hv"}
