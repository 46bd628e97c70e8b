"""A site the bundled motion network never saw: nodding heads, as a BIDS dataset with ratings.

    python benchmarks/site_shift.py --manifest ../shared/data/manifest.tsv --out site \
        --n-labelled 8 --n-held-out 5

The bundled network was trained on motion drawn as TorchIO's ``RandomMotion`` draws it: two
to a few poses, each rotated and shifted at random about all three axes. Real head motion
in the scanner is mostly nodding (MR-ART's participants nodded on cue): many short poses
that pitch the head about the left-right axis, with a small shift along the head-foot
axis as the neck bends. This script simulates that on the train-split T1w images of
ds002748 at their native resolution. Each participant gets four runs of increasing nod
amplitude, graded by the Jenkinson RMS of the poses,
so that the truth is known. The site's raters are also stricter than the synthetic grades
(:data:`bidsqc.geometry.MOTION_GRADE_THRESHOLDS_MM`, 4.5 and 11.7 mm): they call a scan
questionable from :data:`SITE_RATING_THRESHOLDS_MM` ``[0]`` and unusable from ``[1]``. Both
shifts are what a real site brings: its own motion, and its own idea of a bad scan.

It writes:

- ``OUT/bids``: the dataset, one participant per base image;
- ``OUT/ratings.tsv``: the labelled participants' ratings, in the format that the report's
  export writes (usable, questionable with motion, unusable with motion);
- ``OUT/held_out.tsv``: the same for the held-out participants, to score the models on;
- ``OUT/motion.tsv``: every run's poses' RMS and grade.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bidsqc.geometry import MOTION_GRADE_NAMES
from bidsqc.loading import load_anatomical
from bidsqc.training.simulation import Motion

#: Peak pitch of each run, in degrees: still, then three nods of growing amplitude (a range,
#: drawn per run).
NOD_AMPLITUDES_DEG = ((0.0, 0.0), (2.0, 4.0), (5.0, 8.0), (9.0, 14.0))
#: Poses per nodding run, and nods per run.
N_POSES, N_NODS = 16, 3
#: Head-foot shift per degree of pitch, in mm (the head rocks on the neck).
SHIFT_MM_PER_DEG = 0.4
#: RMS motion (mm) from which the site's raters call a scan questionable, and unusable.
SITE_RATING_THRESHOLDS_MM = (1.5, 4.0)
#: What a rater who knows the truth writes for each grade.
RATINGS = {0: ("usable", ""), 1: ("questionable", "motion"), 2: ("unusable", "motion")}


def nodding(amplitude_deg: float, rng: np.random.Generator) -> Motion:
    """Many short poses pitched about the left-right axis, as a head nods ``N_NODS`` times."""
    times = (np.arange(1, N_POSES + 1) + rng.uniform(-0.3, 0.3, N_POSES)) / (N_POSES + 1)
    pitch = amplitude_deg * np.abs(np.sin(np.pi * N_NODS * times))
    degrees = np.stack([pitch, np.zeros(N_POSES), np.zeros(N_POSES)], axis=1)
    translation = np.stack([np.zeros(N_POSES), np.zeros(N_POSES), SHIFT_MM_PER_DEG * pitch], 1)
    return Motion(degrees=degrees, translation=translation, times=times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="../shared/data/manifest.tsv")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-labelled", type=int, default=8, help="participants rated")
    parser.add_argument("--n-held-out", type=int, default=5, help="participants kept apart")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    manifest = pd.read_csv(args.manifest, sep="\t")
    bases = manifest[
        manifest["file"].str.startswith("t1w/ds002748/") & (manifest["split"] == "train")
    ]["file"].tolist()[: args.n_labelled + args.n_held_out]
    rng = np.random.default_rng(args.seed)
    bids = args.out / "bids"
    bids.mkdir(parents=True, exist_ok=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "bidsqc site shift: nodding", "BIDSVersion": "1.9.0"}, indent=2)
    )
    rows = []
    for number, base in enumerate(bases, start=1):
        subject = f"sub-{number:02d}"
        img = load_anatomical(args.manifest.parent / base)
        for run, amplitude_range in enumerate(NOD_AMPLITUDES_DEG, start=1):
            amplitude = rng.uniform(*amplitude_range)
            motion = nodding(amplitude, rng)
            moved = motion(img) if amplitude > 0 else img
            relpath = f"{subject}/anat/{subject}_run-{run}_T1w.nii.gz"
            (bids / relpath).parent.mkdir(parents=True, exist_ok=True)
            data = np.asarray(moved.dataobj, dtype=np.float32)
            nb.save(nb.Nifti1Image(data, img.affine), bids / relpath)
            rms = motion.strength if amplitude > 0 else 0.0
            grade = int(np.searchsorted(SITE_RATING_THRESHOLDS_MM, rms, side="right"))
            rating, artefacts = RATINGS[grade]
            rows.append(
                {
                    "filename": relpath,
                    "participant_id": subject,
                    "base": base,
                    "amplitude_deg": round(amplitude, 3),
                    "rms_mm": round(rms, 3),
                    "grade": MOTION_GRADE_NAMES[grade],
                    "rating": rating,
                    "artefacts": artefacts,
                    "held_out": number > args.n_labelled,
                }
            )
            print(f"{relpath}: pitch {amplitude:.1f} deg, RMS {rms:.2f} mm, {rating}", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "motion.tsv", sep="\t", index=False)
    ratings = table.assign(comment="", rater="simulation", time="")[
        ["filename", "rating", "artefacts", "comment", "rater", "time", "held_out"]
    ]
    for held_out, name in ((False, "ratings.tsv"), (True, "held_out.tsv")):
        subset = ratings[ratings["held_out"] == held_out].drop(columns="held_out")
        subset.to_csv(args.out / name, sep="\t", index=False)


if __name__ == "__main__":
    main()
