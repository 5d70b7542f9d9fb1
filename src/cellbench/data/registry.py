"""The seed papers' datasets by name: where to get them, how they are checked, how to read them.

Each :class:`RegisteredDataset` lists its published files (downloaded and
verified by :mod:`cellbench.remote`, the one downloader cellbench has), its
licence and citation, and for every split where it lies after unpacking and
which layout reader reads it. ``cellbench data download NAME`` fetches and
unpacks it into ``$CELLBENCH_CACHE/datasets/NAME/data``; from then on the name
stands wherever a dataset path is accepted (``--data NAME``, ``registered:
NAME`` in an experiment), with no ``--layout``.

Checksums: a Zenodo record publishes an md5 for every file; it is read from
the record at download time (``record_url``). Where another party publishes a
sha256 of the same file (torch-em pins the DSB2018 and DeepBacs zips) it is
pinned here and says so in ``checksum_note``. Where nothing is published the
first download is trusted and its sha256 recorded (trust on first use, with a
warning); later downloads must match it.

Datasets behind a sign-in (TissueNet needs a DeepCell account, the Cellpose
dataset asks users to accept its terms) carry ``manual`` instructions: the
user downloads the files by hand and gives them to ``--archive``.

Subsets the papers define on another dataset (CellSeg1's CSB on the NeurIPS
challenge images, CPS on the Cellpose set, LIVECell's single cell types) are
entries ``based_on`` that dataset: they share its download and pick samples
with ``select`` (indices into the split's samples sorted by name, as the
CellSeg1 scripts index their sorted file lists) or ``name_prefix``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cellbench.errors import DataError
from cellbench.remote import RemoteFile

__all__ = ["DATASETS", "DatasetFile", "RegisteredDataset", "SplitSource", "get_dataset", "is_registered"]

ZENODO = "https://zenodo.org/records/{record}/files/{file}?download=1"
ZENODO_API = "https://zenodo.org/api/records/{record}"
LIVECELL = "https://livecell-dataset.s3.eu-central-1.amazonaws.com/LIVECell_dataset_2021"


@dataclass(frozen=True)
class DatasetFile:
    """One published file of a dataset.

    ``unpack``: a zip unpacked into ``data/<dest>``; otherwise the file is
    copied to ``data/<dest>/<file_name>``. ``record_url``: a Zenodo API record
    whose md5 for this file is checked.
    """

    remote: RemoteFile
    unpack: bool = True
    dest: str = ""
    record_url: str | None = None


@dataclass(frozen=True)
class SplitSource:
    """Where one split lies inside the unpacked data, and how to read it.

    ``path`` is relative to the data folder (an archive that wraps everything
    in one top folder is read through it); ``reader_split`` is passed to the
    reader as its ``split`` (for layouts whose files name their split);
    ``options`` go to the reader (values of keys ending in ``_dir`` are
    relative to the data folder); ``select`` keeps these indices of the samples
    sorted by name, ``name_prefix`` the samples whose name starts with it.
    """

    path: str
    layout: str
    reader_split: str | None = None
    options: Mapping = field(default_factory=dict)
    select: tuple[int, ...] | None = None
    name_prefix: str | None = None


@dataclass(frozen=True)
class RegisteredDataset:
    """A dataset cellbench can download and read by name."""

    name: str
    title: str
    splits: Mapping[str, SplitSource]
    files: tuple[DatasetFile, ...] = ()
    based_on: str | None = None
    licence: str = ""
    citation: str = ""
    modality: str = ""
    objects: str = ""  # nuclei / whole cell
    channels: str = ""
    tasks: tuple[str, ...] = ("all",)
    size_hint: str = ""
    checksum_note: str = ""
    manual: str | None = None
    used_by: str = ""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["files"] = [
            {"file_name": f.remote.file_name, "url": f.remote.url, "size": f.remote.size,
             "checksum": ({"md5 (Zenodo record)": f.record_url} if f.record_url else {}) | f.remote.checksums,
             "unpack": f.unpack, "dest": f.dest}
            for f in self.files
        ]
        d["splits"] = {k: {kk: vv for kk, vv in dataclasses.asdict(v).items() if vv not in (None, {}, "")}
                       for k, v in self.splits.items()}
        return d


def _zenodo(record: int, file_name: str, *, sha256: str | None = None, dest: str = "") -> DatasetFile:
    return DatasetFile(RemoteFile(file_name, ZENODO.format(record=record, file=file_name), sha256=sha256),
                       dest=dest, record_url=ZENODO_API.format(record=record))


_NEURIPS_RECORD = 10719375
_CELLSEG1 = "Zhou et al., CellSeg1: robust cell segmentation with only one training image (2024)"
_LIVECELL_TYPES = ("A172", "BT474", "BV2", "Huh7", "MCF7", "SHSY5Y", "SkBr3", "SKOV3")


def _split(path: str, layout: str, **kw) -> SplitSource:
    return SplitSource(path, layout, **kw)


def _entries() -> list[RegisteredDataset]:
    from cellbench.data.download import GLIOMA_C6  # the Glioma C6 archive record lives with its downloader

    glioma = RegisteredDataset(
        name="glioma-c6", title="Glioma C6 (phase contrast, overlapping annotations, cell type A / B, soma)",
        files=(DatasetFile(RemoteFile(GLIOMA_C6.filename, GLIOMA_C6.url), record_url=GLIOMA_C6.record_url),),
        splits={s: _split("", "glioma-c6", reader_split=s) for s in ("train", "valid", "test", "gen")},
        licence=GLIOMA_C6.licence, size_hint=GLIOMA_C6.size_hint, modality="phase contrast", objects="whole cell",
        channels="grey", tasks=("cells", "soma", "type-a", "type-b", "types"),
        citation="Glioma C6: a phase-contrast dataset of overlapping glioma cells (Zenodo 15083188)",
        used_by="Glioma C6 paper, Tables 2-4",
    )
    dsb = RegisteredDataset(
        name="dsb2018", title="DSB2018 nuclei, StarDist's curated subset (447 train / 50 test)",
        files=(DatasetFile(RemoteFile(
            "dsb2018.zip", "https://github.com/stardist/stardist/releases/download/0.1.0/dsb2018.zip",
            sha256="e44921950edce378063aa4457e625581ba35b4c2dbd9a07c19d48900129f386f")),),
        splits={"train": _split("dsb2018/train", "dsb"), "test": _split("dsb2018/test", "dsb")},
        licence="CC0 (BBBC038, Caicedo et al. 2019)", modality="fluorescence", objects="nuclei", channels="grey",
        citation="Caicedo et al., Nature Methods 16 (2019); Schmidt et al., StarDist, MICCAI 2018",
        checksum_note="GitHub publishes no checksum; sha256 as pinned by torch-em (constantinpape/torch-em)",
        size_hint="about 40 MB", used_by="StarDist; CellSeg1 (DSB)",
    )
    neurips = RegisteredDataset(
        name="neurips22-cellseg", title="NeurIPS 2022 cell segmentation challenge: labelled training set and tuning set",
        files=(_zenodo(_NEURIPS_RECORD, "Training-labeled.zip",
                       sha256="b2383929eb8e99b2716fa0d4e2f6e03983e626a57cf00fe85175869c54aa3592"),
               _zenodo(_NEURIPS_RECORD, "Tuning.zip",
                       sha256="849423d36bb8fcc2d91a5b189a3b6d93c3d4071c9701eaaa44ba393a510459c4")),
        # The report's 900 / 100 train / validation split of the 1000 labelled images is not published:
        # here every tenth image in name order validates, the rest train (deterministic, documented).
        splits={"train": _split("Training-labeled", "neurips"), "tuning": _split("Tuning", "neurips"),
                "train-900": _split("Training-labeled", "neurips",
                                    select=tuple(i for i in range(1000) if i % 10 != 9)),
                "valid-100": _split("Training-labeled", "neurips", select=tuple(range(9, 1000, 10)))},
        licence="CC BY-NC-ND 4.0", modality="multi-modality (bright field, fluorescence, phase contrast, DIC)",
        objects="whole cell", channels="grey or RGB",
        citation="Ma et al., The multimodality cell segmentation challenge, Nature Methods 21 (2024)",
        checksum_note="md5 from the Zenodo record; sha256 as pinned by torch-em",
        size_hint="about 1.5 GB", used_by="NeurIPS-2022 benchmark report (1000 train, 101 tuning images as test)",
    )
    blood = RegisteredDataset(
        name="cellseg-blood", title="CellSeg1's CSB: the blood-cell images of the NeurIPS 2022 challenge",
        based_on="neurips22-cellseg",
        splits={"train": _split("Training-labeled", "neurips", select=(*range(0, 12), *range(14, 141))),
                "test": _split("Tuning", "neurips", select=(0, 2, 6, 7, 12, 13, 15, 17, 18, 19, 20, 21, 22, 23))},
        licence=neurips.licence, modality="bright field (blood smears)", objects="whole cell", channels="RGB",
        citation=f"{neurips.citation}; subset as in {_CELLSEG1}",
        used_by="CellSeg1 (CSB): indices of experiment_in_paper/dataset/CSB.py in Nuisal/cellseg1",
    )
    cellpose_manual = (
        "The Cellpose dataset asks users to accept its terms: open https://www.cellpose.org/dataset, fill in the "
        "form, download train.zip and test.zip, then run `cellbench data download cellpose --archive train.zip "
        "--archive test.zip`."
    )
    cellpose = RegisteredDataset(
        name="cellpose", title="Cellpose 'cyto' dataset (generalist: cells of many kinds)",
        # served after a form: the page, with the file as fragment (the trust ledger keys files by URL)
        files=(DatasetFile(RemoteFile("train.zip", "https://www.cellpose.org/dataset#train.zip")),
               DatasetFile(RemoteFile("test.zip", "https://www.cellpose.org/dataset#test.zip"))),
        splits={"train": _split("train", "cellpose"), "test": _split("test", "cellpose")},
        licence="Cellpose dataset terms (non-commercial research use)", modality="mixed", objects="whole cell",
        channels="cytoplasm + nucleus (RGB png)", manual=cellpose_manual,
        citation="Stringer et al., Cellpose, Nature Methods 18 (2021)",
        checksum_note="nothing published: trusted on first use", used_by="CellSeg1 (CPG)",
    )
    cps = RegisteredDataset(
        name="cellpose-specialized", title="CellSeg1's CPS: the first 89 train / 11 test images of the Cellpose set",
        based_on="cellpose",
        splits={"train": _split("train", "cellpose", select=tuple(range(89))),
                "test": _split("test", "cellpose", select=tuple(range(11)))},
        licence=cellpose.licence, modality="fluorescence", objects="whole cell", channels=cellpose.channels,
        citation=f"{cellpose.citation}; subset as in {_CELLSEG1}", used_by="CellSeg1 (CPS)",
    )
    ecoli = RegisteredDataset(
        name="deepbacs-ecoli-brightfield", title="DeepBacs E. coli bright-field segmentation",
        files=(_zenodo(5550935, "DeepBacs_Data_Segmentation_E.coli_Brightfield_dataset.zip",
                       sha256="f812a2f814c3875c78fcc1609a2e9b34c916c7a9911abbf8117f423536ef1c17"),),
        splits={s: _split(s, "folder", options={"images": "brightfield", "masks": "masks_RoiMap"})
                for s in ("train", "test")},
        licence="CC BY 4.0", modality="bright field", objects="whole cell (bacteria)", channels="grey",
        citation="Spahn et al., DeepBacs, Communications Biology 5 (2022)",
        checksum_note="md5 from the Zenodo record; sha256 as pinned by torch-em", used_by="CellSeg1 (ECB)",
    )
    bsub = RegisteredDataset(
        name="deepbacs-bsubtilis-fluorescence", title="DeepBacs B. subtilis FtsZ fluorescence segmentation",
        files=(_zenodo(5550968, "DeepBacs_Data_Segmentation_B.subtilis_FtsZ_dataset.zip"),),
        splits={s: _split(f"pix2pix_dataset/{s}", "folder", options={"images": "fluorescence", "masks": "masks"})
                for s in ("train", "test")},
        licence="CC BY 4.0", modality="fluorescence", objects="whole cell (bacteria)", channels="grey",
        citation=ecoli.citation, checksum_note="md5 from the Zenodo record",
        used_by="CellSeg1 (BSF): the pix2pix_dataset folder, as experiment_in_paper/dataset/BSF.py uses",
    )
    livecell = RegisteredDataset(
        name="livecell", title="LIVECell (phase contrast, eight cell lines, COCO annotations)",
        files=(DatasetFile(RemoteFile("images.zip", f"{LIVECELL}/images.zip")),
               *(DatasetFile(RemoteFile(f"livecell_coco_{s}.json", f"{LIVECELL}/annotations/LIVECell/livecell_coco_{s}.json"),
                             unpack=False, dest="annotations") for s in ("train", "val", "test"))),
        splits={s: _split(f"annotations/livecell_coco_{s}.json", "coco", options={"image_dir": "images"})
                for s in ("train", "val", "test")},
        licence="CC BY-NC 4.0", modality="phase contrast", objects="whole cell", channels="grey",
        citation="Edlund et al., LIVECell, Nature Methods 18 (2021)",
        checksum_note="nothing published: trusted on first use", size_hint="about 1.3 GB images + 1.5 GB json",
        used_by="18-methods benchmark (LIVECell whole cell)",
    )
    subsets = [
        RegisteredDataset(
            name=f"livecell-{t.lower()}", title=f"LIVECell, cell line {t} only", based_on="livecell",
            splits={s: dataclasses.replace(v, name_prefix=f"{t}_") for s, v in livecell.splits.items()},
            licence=livecell.licence, modality=livecell.modality, objects="whole cell", channels="grey",
            citation=livecell.citation, used_by="18-methods benchmark (single cell-type subsets)",
        )
        for t in _LIVECELL_TYPES
    ]
    tissuenet_manual = (
        "TissueNet needs a DeepCell account: sign in at https://datasets.deepcell.org/data, download "
        "tissuenet_v1.1.zip, then run `cellbench data download tissuenet --archive tissuenet_v1.1.zip`."
    )
    tissuenet = RegisteredDataset(
        name="tissuenet", title="TissueNet v1.1 (multiplexed tissue imaging, nuclear and whole-cell labels)",
        files=(DatasetFile(RemoteFile("tissuenet_v1.1.zip", "https://datasets.deepcell.org/data")),),
        splits={s: _split("", "tissuenet", reader_split=s) for s in ("train", "val", "test")},
        licence="modified Apache 2.0, non-commercial (DeepCell)", modality="multiplexed fluorescence (tissue)",
        objects="nuclei and whole cell", channels="nuclear + membrane", tasks=("nuclei", "whole-cell"),
        citation="Greenwald et al., Nature Biotechnology 40 (2022)", manual=tissuenet_manual,
        checksum_note="nothing published: trusted on first use",
        used_by="18-methods benchmark (nuclei / whole cell, nuclear / dual channel); CellSeg1 (TSN)",
    )
    return [glioma, dsb, neurips, blood, cellpose, cps, ecoli, bsub, livecell, *subsets, tissuenet]


DATASETS: dict[str, RegisteredDataset] = {d.name: d for d in _entries()}


def is_registered(name: str | Path) -> bool:
    return isinstance(name, str) and name in DATASETS


def get_dataset(name: str) -> RegisteredDataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; registered: {', '.join(DATASETS)}") from None
