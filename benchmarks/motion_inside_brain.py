"""Where the networks see simulated motion: inside the brain, or in the ghosts around it.

    python benchmarks/motion_inside_brain.py --images STILL.nii.gz ... --out DIR

Each image (a skull-stripped scan, zero outside the brain, such as the FastSurfer-conformed
MR-ART scans) is moved by exactly 1, 2 and 3 mm RMS (:class:`RandomMotionRms`) with 4 poses, as
training draws them, and with 32, closer to the continuous drift of a real head. Each moved
copy is kept twice: as simulated, its ghosts spreading into the empty background ("open"), and
with the brain mask applied again ("masked"), as a scan that was moved and then skull-stripped
looks, and that masked copy rounded to integers ("maskedint"), as conformed scans are stored.
``bidsqc participant`` runs on them all; the table printed (and written as
``motion_inside_brain.tsv``) gives each copy's motion and artefact outputs and the measures
that follow real motion.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bidsqc.training.simulation.motion import RandomMotionRms

COLUMNS = ["motion_mm", "p_motion_none", "p_motion_artefact", "p_blur", "cjv", "snr"]


def write_moved_copies(
    images: list[Path], bids: Path, rms_mm: list[float], poses: list[int]
) -> None:
    """The BIDS dataset of the still images and their moved copies, open, masked and rounded."""
    bids.mkdir(parents=True)
    description = {"Name": "motion inside the brain", "BIDSVersion": "1.9.0"}
    (bids / "dataset_description.json").write_text(json.dumps(description))

    def save(label: str, data: np.ndarray, affine: np.ndarray) -> None:
        path = bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
        path.parent.mkdir(parents=True)
        nb.save(nb.Nifti1Image(data.astype(np.float32), affine), path)

    for index, image_path in enumerate(images):
        img = nb.load(image_path)
        still = img.get_fdata(dtype=np.float32)
        brain = still > 0
        save(f"{index}still", still, img.affine)
        for count in poses:
            for seed, rms in enumerate(rms_mm):
                motion = RandomMotionRms(rms_mm=(rms, rms), num_transforms=(count, count))
                moved = motion.sample(np.random.default_rng(seed))(img).get_fdata()
                label = f"{index}rms{rms:g}poses{count}".replace(".", "p")
                save(f"{label}open", moved, img.affine)
                masked = np.where(brain, moved, 0)
                save(f"{label}masked", masked, img.affine)
                save(f"{label}maskedint", np.round(masked), img.affine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rms-mm", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--poses", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--nprocs", type=int, default=2)
    args = parser.parse_args()

    bids = args.out / "bids"
    write_moved_copies(args.images, bids, args.rms_mm, args.poses)
    out = args.out / "bidsqc"
    command = ["bidsqc", str(bids), str(out), "participant", "-w", str(args.out / "work")]
    subprocess.run([*command, "--nprocs", str(args.nprocs)], check=True)
    table = pd.concat(
        pd.read_csv(path, sep="\t", index_col="participant_id")
        for path in sorted(out.glob("sub-*/sub-*_qc.tsv"))
    )[COLUMNS]
    table.to_csv(args.out / "motion_inside_brain.tsv", sep="\t")
    print(table.to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
