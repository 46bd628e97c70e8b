"""Held-out images re-acquired as thick axial slices, for the evaluations to run on.

    python benchmarks/thick_slices.py --images val.txt --slice-mm 6 --out thick6
    bidsqc-evaluate artefact --images thick6/images.txt --out thick6_eval --repeats 1 --seed 0

A clinical 2D scan excites one slab at a time, so each voxel across its slices holds the mean of
a slab as thick as the slice spacing (a box profile, no gap), and its in-plane voxels stay fine.
Each image is so re-sliced along its head-foot axis: its voxels are averaged over contiguous slabs
of the ``--slice-mm`` nearest to a whole number of its own slices, and stored with that spacing.
The copies keep their folders under ``--out`` (so the evaluations name their sources as before)
and are listed in ``images.txt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nibabel as nb
import numpy as np


def reslice_axially(img: nb.Nifti1Image, slice_mm: float) -> nb.Nifti1Image:
    """``img`` (reoriented to RAS+ first) as a 2D acquisition of contiguous axial slices about
    ``slice_mm`` thick."""
    img = nb.as_closest_canonical(img)
    zoom = float(img.header.get_zooms()[2])
    per_slice = max(1, round(slice_mm / zoom))
    data = img.get_fdata(dtype=np.float32)
    n_slices = data.shape[2] // per_slice
    slabs = data[:, :, : n_slices * per_slice].reshape(*data.shape[:2], n_slices, per_slice)
    # A slab's centre lies (per_slice - 1) / 2 of the old voxels past its first voxel.
    affine = img.affine @ nb.affines.from_matvec(
        np.diag([1, 1, per_slice]), [0, 0, (per_slice - 1) / 2]
    )
    return nb.Nifti1Image(slabs.mean(axis=-1), affine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="a text file of image paths")
    parser.add_argument("--slice-mm", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sources = [Path(line) for line in args.images.read_text().split()]
    common = Path(os.path.commonpath(sources))
    written = []
    for source in sources:
        thick = reslice_axially(nb.load(source), args.slice_mm)
        target = args.out / source.relative_to(common)
        target.parent.mkdir(parents=True, exist_ok=True)
        nb.save(thick, target)
        zooms = " x ".join(f"{zoom:.2f}" for zoom in thick.header.get_zooms())
        print(f"{target}\t{zooms} mm")
        written.append(str(target.resolve()))
    (args.out / "images.txt").write_text("\n".join(written) + "\n")


if __name__ == "__main__":
    main()
