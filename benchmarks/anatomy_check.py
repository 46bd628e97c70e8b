"""Which registered images show brain anatomy: objects that are no brain, heads at the worst
severity of each artefact, and infants' contrasts.

    python benchmarks/anatomy_check.py --out anatomy --nprocs 2 --heads \
        ../shared/data/t1w/fullhead/dcm_qa_philips_enh_ADNI_MPRAGE_T1w.nii.gz \
        ../shared/data/t1w/fullhead/FNNDSC_SAG-anon_T1w.nii.gz

A BIDS dataset is written under ``--out``: five objects a scanner images that are no brain (a
head-sized water phantom, a sphere with rods and a plate, a bottle, an ellipsoid of smooth
random texture, a leg with its bone); each of ``--heads`` with each artefact of the artefact
network at severity 1 (:class:`ArtefactAtSeverity`) and moved by 20 mm RMS; and each head
given an infant's T1w contrasts, its grey and white matter swapped (under about 6 months) or
made isointense (6-12 months), the CSF kept dark. ``bidsqc participant`` processes them all.
Prints each image's status, decision, and the whole-brain and deep tissue contrasts of its
registered image (:func:`~bidsqc.preprocessing.tissue_contrast`,
:func:`~bidsqc.preprocessing.deep_tissue_contrast`), or its error, and writes the table to
``--out/anatomy.tsv``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from bidsqc.brain_extraction import extract_brain
from bidsqc.data import load_template
from bidsqc.outputs.tables import read_qc_table
from bidsqc.preprocessing import deep_tissue_contrast, resample_to_zoom, tissue_contrast
from bidsqc.training.evaluation.artefact import ArtefactAtSeverity
from bidsqc.training.simulation import RandomMotionRms

ARTEFACTS = ("ghosting", "spike", "bias", "noise", "blur")
#: The grid of the objects: 1 mm, a head's field of view.
OBJECT_SHAPE = (192, 224, 192)


def objects(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Images of things that are no brain, each with Gaussian noise, by label."""
    grid = np.indices(OBJECT_SHAPE) - (np.array(OBJECT_SHAPE) / 2)[:, None, None, None]
    x, y, z = grid
    ellipsoid = (x / 70) ** 2 + (y / 90) ** 2 + (z / 75) ** 2 <= 1
    sphere = (grid**2).sum(axis=0) <= 85**2
    rods = np.zeros(OBJECT_SHAPE, bool)
    for cx, cy in ((-30, -30), (30, -30), (0, 35), (-40, 20), (40, 20)):
        rods |= (x - cx) ** 2 + (y - cy) ** 2 <= 8**2
    texture = ndi.gaussian_filter(rng.normal(size=OBJECT_SHAPE), 4)
    texture = (texture - texture.mean()) / texture.std()
    leg = x**2 + y**2 <= 55**2
    bone = (x**2 + (y - 5) ** 2 <= 25**2) & (np.abs(z) > 8)
    clean = {
        "phantom": 800.0 * ellipsoid,
        "sphererods": np.where(rods, 200.0, 600.0) * sphere + 400.0 * (np.abs(z - 20) < 3) * sphere,
        "bottle": 700.0 * ((x**2 + y**2 <= 60**2) & (np.abs(z) < 80)),
        "textured": ellipsoid * (600 + 150 * texture),
        "leg": 500.0 * leg + 400.0 * bone,
    }
    return {
        label: np.abs(image + rng.normal(0, 20, OBJECT_SHAPE)) for label, image in clean.items()
    }


def tissue_levels(img: nb.Nifti1Image) -> np.ndarray:
    """The mean intensities of CSF, grey and white matter in the brain that a participant run
    extracts: three 1D k-means clusters of its voxels on the 2 mm grid, in increasing order."""
    resampled = resample_to_zoom(img)
    values = resampled.get_fdata()[extract_brain(resampled)]
    centres = np.percentile(values, [10, 50, 90])
    for _ in range(50):
        nearest = np.abs(values[:, None] - centres).argmin(axis=1)
        centres = np.array([values[nearest == k].mean() for k in range(3)])
    return np.sort(centres)


def infant_contrasts(img: nb.Nifti1Image) -> dict[str, np.ndarray]:
    """``img`` with an infant's T1w contrasts: above midway between CSF and grey matter, the
    intensities mirrored about the middle of grey and white matter (``swapped``) or pulled to
    grey matter's level, a fifth of their spread kept (``isointense``); the CSF stays dark."""
    csf, grey, white = tissue_levels(img)
    data = img.get_fdata(dtype=np.float32)
    dark = (csf + grey) / 2
    swapped = np.clip(grey + white - data, dark, None)
    isointense = np.clip(grey + 0.2 * (data - grey), dark, None)
    return {
        "swapped": np.where(data < dark, data, swapped),
        "isointense": np.where(data < dark, data, isointense),
    }


def write_dataset(heads: list[Path], bids: Path, seed: int) -> None:
    """The objects, and each head (numbered) with every artefact and every infant contrast."""
    rng = np.random.default_rng(seed)
    bids.mkdir(parents=True, exist_ok=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "anatomy check", "BIDSVersion": "1.9.0"})
    )
    affine = nb.affines.from_matvec(np.eye(3), -np.array(OBJECT_SHAPE) / 2)
    images = {label: nb.Nifti1Image(data, affine) for label, data in objects(rng).items()}
    for index, path in enumerate(heads):
        loaded = nb.load(path)
        head = nb.Nifti1Image(loaded.get_fdata(dtype=np.float32), loaded.affine)
        images[f"{index}xclean"] = head
        for name in ARTEFACTS:
            images[f"{index}x{name}"] = ArtefactAtSeverity(name, 1.0).sample(rng)(head)
        moved = RandomMotionRms(rms_mm=(20, 20), num_transforms=(8, 8)).sample(rng)(head)
        images[f"{index}xmotion"] = moved
        for contrast, data in infant_contrasts(head).items():
            images[f"{index}x{contrast}"] = nb.Nifti1Image(data, head.affine)
        print(f"{index}: {path}", flush=True)
    for label, img in images.items():
        folder = bids / f"sub-{label}" / "anat"
        folder.mkdir(parents=True, exist_ok=True)
        nb.save(
            nb.Nifti1Image(img.get_fdata(dtype=np.float32), img.affine),
            folder / f"sub-{label}_T1w.nii.gz",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nprocs", type=int, default=os.cpu_count())
    opts = parser.parse_args()

    bids, out = opts.out / "bids", opts.out / "bidsqc"
    if not bids.exists():
        write_dataset(opts.heads, bids, opts.seed)
    command = ["bidsqc", str(bids), str(out), "participant", "-w", str(opts.out / "work")]
    subprocess.run([*command, "--nprocs", str(opts.nprocs)], check=False)
    template = load_template(2)
    rows = []
    for table in sorted(out.glob("sub-*/sub-*_qc.tsv")):
        (row,) = read_qc_table(table).to_dict("records")
        registered = next((table.parent / "anat").glob("*_desc-preproc_T1w.nii.gz"), None)
        contrasts = {}
        if registered is not None:  # none for a failed image
            image = nb.load(registered).get_fdata(dtype=np.float32)
            contrasts = {
                "tissue_contrast": tissue_contrast(image, template),
                "deep_tissue_contrast": deep_tissue_contrast(image, template),
            }
        rows.append(
            {"image": row["participant_id"].removeprefix("sub-"), "status": row["status"],
             "decision": row["decision"], **contrasts, "error": row["error"]}
        )  # fmt: skip
    result = pd.DataFrame(rows).set_index("image")
    result.to_csv(opts.out / "anatomy.tsv", sep="\t", float_format="%.4g")
    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        print(result.round(3).to_string())


if __name__ == "__main__":
    main()
