"""How much anatomy does a registration from a mislabelled header show?

    python benchmarks/mislabelled_headers.py --out mislabelled.tsv \
        --images data/demo/sub-02/anat/sub-02_FLAIR.nii.gz

Each image is resampled to 2 mm as a participant run does, then its voxels are turned by each
of the 23 quarter turns with the header kept, as a DICOM conversion that mislabels the axes
writes them, and registered from that header's orientation as
:func:`bidsqc.preprocessing.register_to_template` registers first, before it tries any other
start. Prints each fit's ``tissue_contrast`` and ``deep_tissue_contrast`` (the unturned image
first) and writes them to ``--out``: what decides whether other starts are tried.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from registration_rows import image_at_2mm, print_row, registration_parser

from bidsqc import preprocessing
from bidsqc.brain_extraction import extract_brain
from bidsqc.data import load_template
from bidsqc.preprocessing import (
    deep_tissue_contrast,
    tissue_contrast,
)


def quarter_turns(data: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """The voxel array turned by each of the 24 quarter turns that the registration tries as
    starts (the unturned first), each named by the voxel axis and sign that each axis now
    holds."""
    for turn in preprocessing._quarter_turns():
        order = np.abs(turn).argmax(axis=1)
        signs = turn[range(3), order]
        turned = np.flip(np.transpose(data, order), np.flatnonzero(signs < 0).tolist())
        axes = zip(order, signs, strict=True)
        name = " ".join(f"{'-' if sign < 0 else '+'}{axis}" for axis, sign in axes)
        yield name, np.ascontiguousarray(turned)


def main() -> None:
    parser = registration_parser(__doc__)
    opts = parser.parse_args()

    template = load_template(2)
    rows = []
    for path in opts.images:
        img = image_at_2mm(path)
        for turn, data in quarter_turns(np.asanyarray(img.dataobj)):
            turned = nb.Nifti1Image(data, img.affine)
            row = {"image": path.name, "voxel_axes": turn}
            with tempfile.TemporaryDirectory(prefix="mislabelled_") as scratch:
                try:
                    result = preprocessing._register(
                        turned, extract_brain(turned), Path(scratch), template
                    )
                except ValueError as error:
                    row["outcome"] = f"{type(error).__name__}: {error}"
                else:
                    registered = result.registered.get_fdata(dtype=np.float32)
                    row["tissue_contrast"] = tissue_contrast(registered, template)
                    row["deep_tissue_contrast"] = deep_tissue_contrast(registered, template)
                    row["outcome"] = "registered"
            rows.append(row)
            print_row(row)
    table = pd.DataFrame(rows)
    table.to_csv(opts.out, sep="\t", index=False, float_format="%.4g")
    turned = table[table["voxel_axes"] != "+0 +1 +2"]
    print(
        f"# {len(turned)} turned: deep_tissue_contrast at most "
        f"{turned['deep_tissue_contrast'].max():.3f}, tissue_contrast at most "
        f"{turned['tissue_contrast'].max():.3f}"
    )


if __name__ == "__main__":
    main()
