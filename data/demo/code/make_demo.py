"""Rebuild the bidsqc demo dataset from the real images in ``../shared/data``.

    python data/demo/code/make_demo.py /path/to/shared/data

sub-01 run-1 is ds002748 sub-05 (CC0), run-2 is the same image with severe simulated head
motion and run-3 with moderate Rician noise (severity 0.6; bidsqc's corruption engine,
seeded). sub-02 is MSLUB longitudinal patient01, study 2 (CC-BY 4.0): a clinical 2D T1w and
FLAIR with 3 mm slices.
"""

import shutil
import sys
from pathlib import Path

import nibabel as nb
import numpy as np

from bidsqc.training.simulation import Noise, RandomMotion

DEMO = Path(__file__).resolve().parents[1]
SEED = 2748
SOURCES = {
    "sub-01/anat/sub-01_run-1_T1w.nii.gz": "t1w/ds002748/sub-05_T1w.nii.gz",
    "sub-02/anat/sub-02_T1w.nii.gz": "mslub/longitudinal_raw/patient01/study2_T1W.nii.gz",
    "sub-02/anat/sub-02_FLAIR.nii.gz": "mslub/longitudinal_raw/patient01/study2_FLAIR.nii.gz",
}
MOVED = "sub-01/anat/sub-01_run-2_T1w.nii.gz"
NOISY = "sub-01/anat/sub-01_run-3_T1w.nii.gz"


def save_like(data: np.ndarray, clean: nb.Nifti1Image, path: Path) -> None:
    """Save ``data`` as uint8, as the clean image is stored."""
    out = nb.Nifti1Image(
        np.clip(np.round(data), 0, 255).astype(np.uint8), clean.affine, clean.header
    )
    out.header.set_data_dtype(np.uint8)
    nb.save(out, path)


def main(shared_data: Path) -> None:
    for target, source in SOURCES.items():
        (DEMO / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / source, DEMO / target)

    clean = nb.load(DEMO / "sub-01/anat/sub-01_run-1_T1w.nii.gz")
    motion = RandomMotion(degrees=(6, 8), translation=(6, 8), num_transforms=2)
    moved = motion.sample(np.random.default_rng(SEED))(clean)
    save_like(moved.get_fdata(), clean, DEMO / MOVED)
    print(f"{MOVED}: motion RMS {motion.sample(np.random.default_rng(SEED)).strength:.2f} mm")
    noise = Noise(std=0.12, seed=SEED)
    save_like(noise(clean).get_fdata(), clean, DEMO / NOISY)
    print(f"{NOISY}: noise severity {noise.severity:.2f}")
    shutil.copyfile(
        DEMO / MOVED.replace(".nii.gz", ".json"), DEMO / NOISY.replace(".nii.gz", ".json")
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
