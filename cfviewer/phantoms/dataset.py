"""write_dataset(): phantoms on disk as a study would import them.

Layout of `out_dir`:
    images/<id>.png          16-bit greyscale PNG ([-1024, 1024] -> 0..65535)
    dicom/<id>.dcm           DX, MONOCHROME2, PatientID=<id>, deterministic UIDs, PixelSpacing
    masks/<id>_<name>.png    8-bit 0/255, one per finding and confounder present
    labels.csv               one row per image (see LABEL_COLUMNS)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cfviewer import PATHOLOGIES
from cfviewer.errors import CfviewerError
from cfviewer.phantoms.confounders import CONFOUNDERS
from cfviewer.phantoms.generator import Phantom, PhantomConfig, check_size, iter_phantoms

LABEL_COLUMNS: tuple[str, ...] = ("id", "seed", "image", "dicom", *PATHOLOGIES, *CONFOUNDERS, "ctr", "masks")
FIELD_OF_VIEW_CM = 40.0   # the body frame spans 2 units = 40 cm at scale 1 (see findings.mass)


class DatasetExistsError(CfviewerError):
    pass


def mask_file_name(image_id: str, name: str) -> str:
    return f"{image_id}_{name.replace(' ', '_')}.png"


def _write_mask(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(mask.astype(np.uint8) * 255).save(path, format="PNG")


def write_phantom(out_dir: Path, image_id: str, ph: Phantom, dataset_seed: int, dicom: bool = True) -> dict:
    """Write one phantom's files; returns its labels.csv row."""
    from cfviewer.imaging import deterministic_uid, write_dicom, write_png16

    img_rel = Path("images") / f"{image_id}.png"
    write_png16(out_dir / img_rel, ph.image)
    dcm_rel = ""
    if dicom:
        dcm_rel = str(Path("dicom") / f"{image_id}.dcm")
        spacing = FIELD_OF_VIEW_CM * 10.0 / ph.meta["frame"]["scale"] / ph.image.shape[0]
        write_dicom(
            out_dir / dcm_rel, ph.image,
            patient_id=image_id,
            study_uid=deterministic_uid("cfviewer-phantom", dataset_seed, ph.seed, "study"),
            series_uid=deterministic_uid("cfviewer-phantom", dataset_seed, ph.seed, "series"),
            sop_uid=deterministic_uid("cfviewer-phantom", dataset_seed, ph.seed, "sop"),
            pixel_spacing=(spacing, spacing),
            study_date="20260101",
            SeriesDescription="cfviewer phantom chest PA",
        )
    mask_rels = []
    for name, m in ph.masks.items():
        rel = Path("masks") / mask_file_name(image_id, name)
        _write_mask(out_dir / rel, m)
        mask_rels.append(str(rel))
    row = {"id": image_id, "seed": ph.seed, "image": str(img_rel), "dicom": dcm_rel}
    row.update({p: ph.labels[p] for p in PATHOLOGIES})
    row.update({c: int(ph.confounders[c]) for c in CONFOUNDERS})
    row["ctr"] = f"{ph.meta['ctr']:.4f}"
    row["masks"] = ";".join(mask_rels)
    return row


def write_dataset(out_dir: str | Path, n: int, size: int = 224, seed: int = 0,
                  config: PhantomConfig | None = None, *, dicom: bool = True, overwrite: bool = False,
                  progress: bool | None = None, n_jobs: int = 1) -> Path:
    """Generate n phantoms (the same images as generate_batch(n, seed, size, config)) and write
    them with masks and labels.csv under out_dir. Returns the path of labels.csv."""
    from tqdm import tqdm

    size = check_size(size)
    n = int(n)
    if n < 1:
        raise CfviewerError(f"number of phantoms {n}: ask for at least 1 (--n)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CfviewerError(f"output {out} is a file; give a directory path (--out)")
    labels_csv = out / "labels.csv"
    if labels_csv.exists() and not overwrite:
        raise DatasetExistsError(
            f"{labels_csv} already exists; choose another --out directory or pass --overwrite")
    for sub in ("images", "masks", *(("dicom",) if dicom else ())):
        (out / sub).mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(n - 1)))
    rows = []
    it = iter_phantoms(n, seed, size, config, n_jobs=n_jobs)
    show = (n >= 50) if progress is None else progress
    for i, ph in enumerate(tqdm(it, total=n, disable=not show, desc="phantoms", unit="img")):
        rows.append(write_phantom(out, f"phantom_{i:0{width}d}", ph, seed, dicom=dicom))
    tmp = labels_csv.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(LABEL_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(labels_csv)
    return labels_csv
