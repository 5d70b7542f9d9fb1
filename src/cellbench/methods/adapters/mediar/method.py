"""``mediar``: MediarFormer (MEDIAR, the NeurIPS-2022 cell segmentation winner) as the Glioma C6 paper ran it.

Network (:mod:`.model`): MA-Net decoder on a MiT (SegFormer) encoder, built
on segmentation-models-pytorch, with a cell-probability head and a Cellpose
flow head. Training (:mod:`.train`, :mod:`.augment`): MEDIAR's augmentations
on crops, flows from the augmented labels by Cellpose's dynamics, BCE + MSE,
AdamW with a cosine schedule. Prediction (:mod:`.inference`): Gaussian-blended
sliding windows with 60 % overlap, flip TTA, masks by Cellpose's dynamics.

Defaults are the published run: ``mit_b5``, decoder (1024, 512, 256, 128, 64),
512 px crops and windows, batch 8, AdamW lr 2e-5, cosine T_max 100 down to
1e-7, 100 epochs (the Glioma C6 paper fine-tuned 100 epochs from MEDIAR's
released weights), TTA on. Preset ``cpu`` trains ``mit_b0`` from scratch in
minutes (see :attr:`MediarMethod.presets`).

Places where cellbench had to choose (MEDIAR's code or the paper was silent or
did not apply):

* ImageNet encoder weights: MEDIAR starts its pretraining from them; cellbench
  downloads nothing, so the encoder starts random unless ``pretrained`` names a
  whole MEDIAR-Former state dict (a file, or a name in ``cellbench.pretrained``).
  Decoder and heads keep smp's initialisation (MEDIAR's README says He normal;
  its code leaves smp's Kaiming-uniform decoder and PyTorch's default heads).
* Normalisation: MEDIAR maps the 0 / 99.5 percentiles of the non-zero pixels
  (all channels together) to 0 / 255 as uint8, then rescales to [0, 1]. Here
  the same percentiles map to [0, 1] in float, clipped, without the uint8
  rounding. Input is three channels: grey is repeated (as MEDIAR's reader
  does), two channels get a zero third, an alpha channel is dropped.
* Not ported, because they concern MEDIAR's multi-dataset pretraining, not
  training on one dataset: modality discovery and amplified sampling, cell
  memory replay, boundary exclusion (pretraining only). The two-model
  ensemble of the paper is one model per model directory here; TTA is a
  config field (``tta``).
* Intensity diversification: MEDIAR's code applies it to every crop (its
  README table says p 0.25); code followed. It draws among the ids present in
  the crop (MEDIAR's draw from ``range(label.max())`` can never pick the
  highest id).
* Gaussian noise std drawn in [0, 0.1] per crop (MONAI's RandGaussianNoise).
* An epoch: ``crops_per_epoch`` crops (None: max(batch_size, number of images)),
  so one training image still fills a batch; MEDIAR's epoch is one crop per image.
* Flows are recomputed from each augmented crop (as MEDIAR does) by
  ``cellpose.dynamics.masks_to_flows``; masks come from
  ``cellpose.dynamics.compute_masks`` after MEDIAR's cleaning of the probability
  mask (holes and objects < 16 px); ``min_size`` 0 keeps every mask as MEDIAR does.
* Instance scores: each instance's mean cell probability.
* Overlapping annotations are flattened for training (policy ``flatten``), as
  the paper did for MediarFormer and Cellpose.

torch, segmentation-models-pytorch and cellpose are imported inside the
functions that need them, so ``cellbench methods`` lists this method without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.methods.base import Method, ProgressFactory, TrainHistory
from cellbench.methods.checkpoint import train_fingerprint
from cellbench.methods.device import check_threads, on_config_threads, torch_device
from cellbench.methods.adapters.mediar.augment import AugmentConfig
from cellbench.methods.adapters.mediar.model import ENCODERS, build_mediarformer, load_mediar_state, read_state_dict
from cellbench.methods.preprocess import PreprocessConfig, preprocess
from cellbench.methods.tiling import TileConfig
from cellbench.methods.validation import validation_f1
from cellbench.methods.seeding import seed_torch

__all__ = ["MediarConfig", "MediarMethod", "WEIGHTS_FILE", "mediar_input"]

WEIGHTS_FILE = "mediar_model.pth"


@dataclass(frozen=True)
class MediarConfig:
    """MediarFormer settings (MEDIAR's names where it has them).

    Attributes:
        pretrained: a MEDIAR-Former state dict to start from: a file path or a
            name in ``cellbench.pretrained`` (e.g. MEDIAR's phase-1 / phase-2
            weights, which are ``mit_b5`` with the published decoder). None: random.
        encoder: ``mit_b0`` ... ``mit_b5`` (MEDIAR: mit_b5).
        decoder_channels, decoder_pab_channels: MA-Net decoder widths (MEDIAR:
            (1024, 512, 256, 128, 64) and 256).
        epochs, batch_size, crops_per_epoch, crop: training length, batch,
            crops per epoch (None: max(batch_size, number of images)), crop side.
        learning_rate, weight_decay: AdamW (weight decay: torch's default, which MEDIAR keeps).
        t_max, eta_min: the cosine schedule, stepped per epoch.
        valid_every: epochs between validations when validation images are given.
        augment: MEDIAR's augmentations (:class:`AugmentConfig`).
        percentiles: intensity percentiles (of the non-zero pixels) mapped to 0 and 1.
        preprocess: cellbench preprocessing before that (default none; e.g. CLAHE).
        roi, overlap, window_batch: sliding-window side (multiple of 32), overlap
            fraction and windows per forward pass.
        tta: average with left-right and up-down flipped predictions.
        prob_threshold: cell probability above which a pixel is in a cell.
        flow_threshold: Cellpose's flow-error threshold (0 keeps every mask).
        niter: Cellpose dynamics steps.
        min_size: masks smaller than this many pixels are dropped (0: none, as MEDIAR).
        flatten: how overlapping training annotations become label images.
        threads: torch CPU threads for training and prediction; 0 leaves torch's default (one per
            core). The count changes the trained weights (see ``torch_threads``).
    """

    pretrained: str | None = None
    encoder: str = "mit_b5"
    decoder_channels: tuple[int, ...] = (1024, 512, 256, 128, 64)
    decoder_pab_channels: int = 256
    epochs: int = 100
    batch_size: int = 8
    crops_per_epoch: int | None = None
    crop: int = 512
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    t_max: int = 100
    eta_min: float = 1e-7
    valid_every: int = 1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    percentiles: tuple[float, float] = (0.0, 99.5)
    preprocess: PreprocessConfig = field(default_factory=lambda: PreprocessConfig(normalize="none"))
    roi: int = 512
    overlap: float = 0.6
    window_batch: int = 4
    tta: bool = True
    prob_threshold: float = 0.5
    flow_threshold: float = 0.4
    niter: int = 200
    min_size: int = 0
    flatten: str = "priority-last"
    threads: int = 0

    def __post_init__(self) -> None:
        policy_from_name(self.flatten)
        check_threads(self.threads)
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {list(ENCODERS)}, got {self.encoder!r}")
        if len(self.decoder_channels) != 5 or min(self.decoder_channels) < 2:
            raise ValueError(f"decoder_channels must be five widths >= 2, got {self.decoder_channels!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.valid_every < 1 or self.t_max < 1:
            raise ValueError("epochs, batch_size, valid_every and t_max must be at least 1")
        if self.crops_per_epoch is not None and self.crops_per_epoch < 1:
            raise ValueError(f"crops_per_epoch must be at least 1, got {self.crops_per_epoch}")
        for name in ("crop", "roi"):
            value = getattr(self, name)
            if value < 32 or value % 32:
                raise ValueError(f"{name} must be a multiple of 32 (the MiT encoder's stride), got {value}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if len(self.percentiles) != 2 or not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {self.percentiles}")
        if not 0.0 < self.prob_threshold < 1.0:
            raise ValueError(f"prob_threshold must be in (0, 1), got {self.prob_threshold}")


def mediar_input(image: np.ndarray, config: MediarConfig) -> np.ndarray:
    """The network's input for one H x W [x C] image: 3 x H x W float32 in [0, 1].

    >>> x = mediar_input(np.arange(12, dtype=np.uint8).reshape(3, 4), MediarConfig())
    >>> x.shape, float(x.min()), float(x.max())
    ((3, 3, 4), 0.0, 1.0)
    """
    x = preprocess(np.asarray(image), config.preprocess)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise DataError(f"mediar: image must be H x W or H x W x C, got shape {x.shape}")
    c = x.shape[-1]
    if c == 4:
        x = x[..., :3]
    elif c > 4:
        raise DataError(f"mediar: images have 1 to 4 channels, got {c}")
    values = x[x != 0]
    lo, hi = np.percentile(values, config.percentiles) if values.size else (0.0, 0.0)
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(x)
    span = float(x.max() - x.min())
    x = (x - x.min()) / span if span > 0 else x  # MONAI's ScaleIntensity after the percentile clip
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif x.shape[-1] == 2:
        x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
    return np.ascontiguousarray(np.moveaxis(x, -1, 0), dtype=np.float32)


def _resolve_pretrained(name_or_path: str) -> Path:
    """A registry name through ``cellbench.pretrained`` when it exists, else a file path."""
    try:
        from cellbench.pretrained import resolve_pretrained
    except ImportError:
        return Path(name_or_path)
    return Path(resolve_pretrained(name_or_path))


class MediarMethod(Method):
    """MediarFormer: MiT encoder + MA-Net decoder, cell-probability and flow heads, Cellpose dynamics."""

    name = "mediar"
    version = "1"
    description = ("MediarFormer (MEDIAR, NeurIPS-2022 winner): MiT encoder + MA-Net decoder, Cellpose flows; "
                   "mit_b5 published, mit_b0 for CPU")
    requires = ("torch", "segmentation_models_pytorch", "cellpose")
    extra = "smp"
    Config = MediarConfig
    #: MEDIAR blends network outputs over its own windows, then follows flows on the whole image.
    default_tiling = TileConfig(tile=0)
    #: ``cpu``: mit_b0 from scratch with a 4x narrower decoder (a training step costs ~1/3 of the published
    #: decoder's on mit_b0) on 256 px crops and windows, lr 5e-4, no TTA; about 120 steps of 4 crops.
    #: examples/configs/dsb/mediar.yaml is the DSB setting (128 px crops for nuclei ~24 px across).
    presets = {"cpu": {"encoder": "mit_b0", "decoder_channels": [256, 128, 64, 32, 16], "decoder_pab_channels": 64,
                       "crop": 256, "roi": 256, "epochs": 60, "t_max": 60, "batch_size": 4, "crops_per_epoch": 8,
                       "learning_rate": 5e-4, "eta_min": 1e-5, "valid_every": 10, "tta": False}}
    resumable = True

    def __init__(self, config: MediarConfig | None = None) -> None:
        super().__init__(config)
        self._net: Any = None

    # -- building ---------------------------------------------------------------
    @property
    def _device(self) -> Any:
        return torch_device()

    def _new_net(self, state: dict | None = None, *, source: Path | None = None) -> Any:
        cfg = self.config
        net = build_mediarformer(encoder=cfg.encoder, decoder_channels=cfg.decoder_channels,
                                 decoder_pab_channels=cfg.decoder_pab_channels)
        if state is not None:
            load_mediar_state(net, state, path=source)
        return net.to(self._device)

    def _require_net(self) -> Any:
        """The trained or loaded network; untrained, the ``pretrained`` weights as they are (zero-shot, as the
        Glioma C6 paper ran the NeurIPS-2022 model)."""
        if self._net is None and self.config.pretrained:
            source = _resolve_pretrained(self.config.pretrained)
            self._net = self._new_net(read_state_dict(source), source=source)
            self._net.eval()
        if self._net is None:
            raise DataError("mediar: train or load weights before predicting (or set pretrained)")
        return self._net

    # -- the interface -------------------------------------------------------------
    @on_config_threads
    def train(
        self,
        train: Sequence[Sample],
        valid: Sequence[Sample] | None = None,
        *,
        seed: int = 0,
        progress: ProgressFactory | None = None,
        checkpoint_dir: Path | None = None,
    ) -> TrainHistory:
        """Train on ``train`` (from ``pretrained`` when set); keep the best validation F1 when ``valid`` is given.
        With ``checkpoint_dir``, every epoch is saved there and a saved one continued."""
        from cellbench.methods.adapters.mediar.train import Schedule, fit

        if not train:
            raise DataError("mediar: no training images")
        cfg = self.config
        source = _resolve_pretrained(cfg.pretrained) if cfg.pretrained else None
        state = read_state_dict(source) if source is not None else None
        seed_torch(seed)
        self._net = self._new_net(state, source=source)
        policy = policy_from_name(cfg.flatten)
        images = [mediar_input(s.load_image(), cfg) for s in train]
        labels = [flatten(s.instances, policy).labels.astype(np.int32) for s in train]
        for sample, image, lab in zip(train, images, labels):
            if image.shape[1:] != lab.shape:
                raise DataError(f"mediar: image {image.shape[1:]} and labels {lab.shape} differ in size",
                                path=sample.image_path)
        schedule = Schedule(
            epochs=cfg.epochs, batch_size=cfg.batch_size,
            crops_per_epoch=cfg.crops_per_epoch or max(cfg.batch_size, len(images)), crop=cfg.crop,
            learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, t_max=cfg.t_max, eta_min=cfg.eta_min,
            valid_every=cfg.valid_every, augment=cfg.augment,
        )
        validate = (lambda: self._f1(valid, policy)) if valid else None
        fingerprint = train_fingerprint(self, train, valid, seed) if checkpoint_dir is not None else None
        records, best, wall = fit(self._net, images, labels, schedule, rng=np.random.default_rng(seed),
                                  device=self._device, validate=validate, progress=progress,
                                  checkpoint_dir=checkpoint_dir, fingerprint=fingerprint)
        self._net.eval()
        return TrainHistory(
            epochs=tuple(records), val_metric="f1@0.5" if valid else None, best_epoch=best, wall_s=wall,
            info={"from": cfg.pretrained or "scratch", "encoder": cfg.encoder,
                  "crops_per_epoch": schedule.crops_per_epoch,
                  "loss": "BCE(cellprob) + 0.5 MSE(flows, 5 x Cellpose flows)"},
        )

    def _f1(self, samples: Sequence[Sample], policy: Any) -> float:
        """Pooled F1 at IoU 0.5 of the current network on ``samples`` (flattened ground truth)."""
        self._net.eval()
        try:
            return validation_f1(samples, lambda image: self._labels(image)[0], flatten_policy=self.config.flatten)
        finally:
            self._net.train()

    def _labels(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label image and cell probability of one image."""
        from cellbench.methods.adapters.mediar.inference import masks_from_maps, predict_maps

        cfg = self.config
        net = self._require_net()
        device = self._device

        def run(x: Any) -> Any:
            return net(x.to(device))

        maps = predict_maps(run, mediar_input(image, cfg), roi=cfg.roi, overlap=cfg.overlap, tta=cfg.tta,
                            batch=cfg.window_batch)
        return masks_from_maps(maps, prob_threshold=cfg.prob_threshold, flow_threshold=cfg.flow_threshold,
                               niter=cfg.niter, min_size=cfg.min_size)

    @on_config_threads
    def predict(self, image: np.ndarray) -> InstanceSet:
        """MediarFormer masks; each instance's score is its mean cell probability."""
        self._require_net().eval()
        masks, prob = self._labels(image)
        found = InstanceSet.from_label_image(masks)
        scored = tuple(inst.replace(score=float(prob[inst.slices][inst.mask].mean())) for inst in found)
        return found.replace(instances=scored)

    def save_weights(self, folder: Path) -> None:
        """The network's state dict (MEDIAR's key layout) as ``weights/mediar_model.pth``."""
        import torch

        state = {k: v.detach().cpu() for k, v in self._require_net().state_dict().items()}
        torch.save(state, Path(folder) / WEIGHTS_FILE)  # the model directory is staged and renamed whole

    def load_weights(self, folder: Path) -> None:
        path = Path(folder) / WEIGHTS_FILE
        self._net = self._new_net(read_state_dict(path), source=path)
        self._net.eval()
