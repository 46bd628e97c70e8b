"""Are heads that lie tilted in their headers registered?

    python benchmarks/tilted_heads.py --out tilted.tsv --degrees 30 40 50 \
        --images ../shared/data/t1w/fullhead/dcm_qa_philips_enh_ADNI_MPRAGE_T1w.nii.gz

Each image is resampled to 2 mm as a participant run does, then its header is turned about the
centre of its brain by each of ``--degrees`` either way about each axis (a pitch, a roll, a
yaw; the voxels are kept), and :func:`bidsqc.preprocessing.register_to_template` registers it.
A head in register shows its anatomy (``tissue_contrast``, about as high as unturned) and
needs no further rigid registration (``rereg_mm``, as a participant run measures it). Prints
each registration, its outcome and its time, and writes them to ``--out``.
"""

from __future__ import annotations

import tempfile
import time

import nibabel as nb
import numpy as np
import pandas as pd
from registration_rows import image_at_2mm, print_row, registration_parser

from bidsqc.brain_extraction import extract_brain
from bidsqc.data import load_template
from bidsqc.geometry import rigid_affine
from bidsqc.measures.alignment import rereg_mm
from bidsqc.preprocessing import (
    register_to_template,
    residual_misregistration,
    tissue_contrast,
)

AXES = ("pitch", "roll", "yaw")


def main() -> None:
    parser = registration_parser(__doc__)
    parser.add_argument("--degrees", nargs="+", type=float, default=[30.0, 40.0, 50.0])
    opts = parser.parse_args()

    template = load_template(2)
    rows = []
    for path in opts.images:
        img = image_at_2mm(path)
        centre = nb.affines.apply_affine(img.affine, np.argwhere(extract_brain(img)).mean(0))
        turns = [("pitch", 0.0)] + [
            (axis, sign * degrees) for degrees in opts.degrees for axis in AXES for sign in (1, -1)
        ]
        for axis, degrees in turns:
            angles = np.zeros(3)
            angles[AXES.index(axis)] = degrees
            turn = rigid_affine(angles, (0.0, 0.0, 0.0), centre=centre)
            tilted = nb.Nifti1Image(img.get_fdata(dtype=np.float32), turn @ img.affine)
            row = {"image": path.name, "axis": axis, "degrees": degrees}
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="tilted_") as scratch:
                try:
                    result = register_to_template(tilted, scratch)
                except ValueError as error:
                    row["outcome"] = f"{type(error).__name__}: {error}"
                else:
                    registered = result.registered.get_fdata(dtype=np.float32)
                    brain = result.brain_mask.get_fdata() > 0
                    residual = residual_misregistration(registered, brain, template)
                    row["tissue_contrast"] = tissue_contrast(registered, template)
                    row["rereg_mm"] = rereg_mm(residual, template)
                    row["outcome"] = "registered"
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
            print_row(row)
    pd.DataFrame(rows).to_csv(opts.out, sep="\t", index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
