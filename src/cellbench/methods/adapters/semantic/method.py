""":class:`SemanticMethod`: train / predict / save / load for a network that classifies pixels.

A subclass (``unet``, ``maunet``, ``mesmer``, ``featurenet``) says four things (and
may say a fifth, its input: :meth:`~SemanticMethod.input_image`): the network
(:meth:`~SemanticMethod.build_network`), the targets of a flattened label
image (:meth:`~SemanticMethod.targets`), the loss
(:meth:`~SemanticMethod.loss`) and the instances of the output maps
(:meth:`~SemanticMethod.instances`). Everything else is here: flattening the
annotations (each pixel belongs to one cell, so training uses the config's
flatten policy and the model directory records it), normalisation, random
augmented patches, the seeded AdamW loop, sliding-window prediction of the
whole image, the validation F1, and the weights file, read back with
``torch.load(weights_only=True)``.

The subclass's config is a :class:`SemanticConfig`: the sections ``train``,
``augment``, ``inference``, ``preprocess``, ``flatten`` and ``threads``, plus
the network's and the post-processing's own fields.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.methods.base import EpochRecord, Method, ProgressFactory, TrainHistory
from cellbench.methods.checkpoint import train_fingerprint
from cellbench.methods.adapters.semantic.inference import InferenceSettings, SemanticPreprocess, network_input, predict_maps
from cellbench.methods.adapters.semantic.patches import AugmentSettings, random_patch, stack
from cellbench.methods.device import check_threads, on_config_threads, torch_device
from cellbench.methods.adapters.semantic.train_loop import TrainSettings, deterministic, fit
from cellbench.methods.tiling import TileConfig
from cellbench.methods.validation import validation_f1
from cellbench.methods.torch_file import read_state_dict

__all__ = ["SemanticConfig", "SemanticMethod"]


@dataclass(frozen=True)
class SemanticConfig:
    """The sections every semantic method's config has; a method's config subclasses it.

    A subclass may give a section a subclass of its type with other defaults
    (``maunet``'s ``train: MAUNetTrain``), so a partial section in a config
    file keeps that method's other values.

    Attributes:
        train: optimiser, schedule and patch size (:class:`TrainSettings`).
        augment: augmentation probabilities and ranges (:class:`AugmentSettings`).
        inference: sliding windows and test-time scales (:class:`InferenceSettings`).
        preprocess: per-channel normalisation (1st-99th percentile, clipped).
        flatten: how overlapping training annotations become label images.
        threads: torch CPU threads for training and prediction; 0 leaves torch's default (one per
            core). 1 is faster on a CPU other jobs are using.
    """

    train: TrainSettings = field(default_factory=TrainSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    preprocess: SemanticPreprocess = field(default_factory=SemanticPreprocess)
    flatten: str = "priority-last"
    threads: int = 0

    def __post_init__(self) -> None:
        policy_from_name(self.flatten)  # raises for an unknown name
        check_threads(self.threads)


class SemanticMethod(Method):
    """Base of the methods that predict per-pixel classes (and maps) and cut them into instances."""

    #: The whole image at once: the network slides its own windows (``inference.py``).
    default_tiling = TileConfig(tile=0)
    resumable = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._network: Any = None

    # -- what a subclass says ---------------------------------------------------------------
    @abstractmethod
    def build_network(self, *, pretrained: bool) -> Any:
        """A new ``torch.nn.Module`` for this config (3 input channels).

        ``pretrained``: start from the pretrained weights the config names, if
        any (training); False when saved weights are loaded into it next.
        """

    @abstractmethod
    def targets(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(class map H x W, optional regression map H x W) of a flattened label image."""

    @abstractmethod
    def loss(self, output: Any, batch: dict[str, Any]) -> Any:
        """Scalar loss of the network's output on a batch (``classes`` B x 1 x P x P, maybe ``regression``)."""

    @abstractmethod
    def instances(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(label image, interior probability) from the network's output channels (C x H x W)."""

    def input_image(self, image: np.ndarray) -> np.ndarray:
        """The network's input (H x W x C float32) of an image: by default three channels normalised by
        ``config.preprocess`` (:func:`~cellbench.methods.adapters.semantic.inference.network_input`)."""
        return network_input(image, self.config.preprocess)

    # -- the interface ------------------------------------------------------------------------
    @property
    def weights_file(self) -> str:
        return f"{self.name}.pt"

    def _prepared(self, samples: Sequence[Sample]) -> tuple[list[np.ndarray], list[tuple[np.ndarray, Any]]]:
        policy = policy_from_name(self.config.flatten)
        images, targets = [], []
        for s in samples:
            image = self.input_image(s.load_image())
            labels = flatten(s.instances, policy).labels
            if labels.shape != image.shape[:2]:
                raise DataError(f"{self.name}: image {s.name} is {image.shape[:2]} but its annotation "
                                f"{labels.shape}")
            images.append(image)
            targets.append(self.targets(labels.astype(np.int32)))
        return images, targets

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
        """Train on random augmented patches (from scratch unless the config names pretrained weights); validation
        images give the F1 at IoU 0.5. With ``checkpoint_dir``, every epoch is saved there and a saved one continued."""
        if not train:
            raise DataError(f"{self.name}: no training images")
        cfg = self.config
        images, targets = self._prepared(train)
        if not any((cls > 0).any() for cls, _ in targets):
            raise DataError(f"{self.name}: the training images have no annotated object")
        size = cfg.train.patch_size

        def draw_batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
            patches = []
            for _ in range(cfg.train.batch_size):
                k = int(rng.integers(0, len(images)))
                patches.append(random_patch(images[k], targets[k][0], targets[k][1], size=size,
                                            aug=cfg.augment, rng=rng))
            image, classes, regression = stack(patches)
            batch = {"image": image, "classes": classes}
            if regression is not None:
                batch["regression"] = regression
            return batch

        start = time.perf_counter()
        with deterministic(seed) as rng:
            self._network = self.build_network(pretrained=True).to(torch_device())
            fingerprint = train_fingerprint(self, train, valid, seed) if checkpoint_dir is not None else None
            losses = fit(self._network, self.loss, draw_batch, cfg.train, n_images=len(images), rng=rng,
                         progress=progress, desc=f"{self.name} training", checkpoint_dir=checkpoint_dir,
                         fingerprint=fingerprint)
        wall = time.perf_counter() - start
        val = self._validation_f1(valid) if valid else None
        epochs = tuple(EpochRecord(epoch=k, loss=loss, val_score=val if k == len(losses) - 1 else None)
                       for k, loss in enumerate(losses))
        n_params = sum(p.numel() for p in self._network.parameters())
        return TrainHistory(
            epochs=epochs, val_metric="f1@0.5" if valid else None, best_epoch=len(epochs) - 1, wall_s=wall,
            info={"from": getattr(cfg, "encoder_weights", None) or "scratch", "parameters": int(n_params),
                  "steps_per_epoch": cfg.train.steps(len(images)), "patch_size": size, "flatten": cfg.flatten,
                  "loss": self.loss_name()},
        )

    def loss_name(self) -> str:
        """The loss in words, for the training history."""
        return type(self).__name__

    def _validation_f1(self, valid: Sequence[Sample]) -> float:
        return validation_f1(valid, lambda image: self._labels(image)[0], flatten_policy=self.config.flatten)

    def _require_network(self) -> Any:
        if self._network is None:
            raise DataError(f"{self.name}: train or load weights before predicting")
        return self._network

    def _labels(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        network = self._require_network()
        x = self.input_image(image)
        maps = predict_maps(network, x, roi=self.config.train.patch_size, settings=self.config.inference)
        return self.instances(maps)

    @on_config_threads
    def predict(self, image: np.ndarray) -> InstanceSet:
        """Instances of the whole image; each scored with its mean interior probability."""
        from cellbench.methods.adapters.semantic.postprocess import scored_instances

        labels, p_interior = self._labels(image)
        return scored_instances(labels, p_interior)

    def save_weights(self, folder: Path) -> None:
        import torch

        state = {k: v.detach().cpu() for k, v in self._require_network().state_dict().items()}
        torch.save(state, Path(folder) / self.weights_file)

    def load_weights(self, folder: Path) -> None:
        path = Path(folder) / self.weights_file
        state = read_state_dict(path, what=f"{self.name} weights file")
        network = self.build_network(pretrained=False)
        try:
            network.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise DataError(f"weights do not fit the {self.name} network of this config ({exc})", path=path) from exc
        self._network = network.to(torch_device()).eval()
