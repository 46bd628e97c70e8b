"""How long does the registration of each image take, and what does it find?

    python benchmarks/registration_time.py --out registration_time.tsv \
        --images data/demo/sub-02/anat/sub-02_FLAIR.nii.gz

Each image is resampled to 2 mm as a participant run does, then
:func:`bidsqc.preprocessing.register_to_template` registers it, other starts and all. Prints
each registration's seconds, the ``tissue_contrast`` and ``deep_tissue_contrast`` of the image
it keeps and the name of its transform, and writes them to ``--out``. Run it with the code
before and after a change (``PYTHONPATH``), one after the other on an idle machine.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pandas as pd
from registration_rows import image_at_2mm, print_row, registration_parser

from bidsqc.data import load_template
from bidsqc.preprocessing import (
    deep_tissue_contrast,
    register_to_template,
    tissue_contrast,
)


def main() -> None:
    parser = registration_parser(__doc__)
    opts = parser.parse_args()

    template = load_template(2)
    rows = []
    for path in opts.images:
        img = image_at_2mm(path)
        row: dict = {"image": path.name}
        with tempfile.TemporaryDirectory(prefix="registration_") as scratch:
            start = time.perf_counter()
            try:
                result = register_to_template(img, scratch)
            except ValueError as error:
                row["seconds"] = time.perf_counter() - start
                row["outcome"] = f"{type(error).__name__}: {error}"
            else:
                row["seconds"] = time.perf_counter() - start
                registered = result.registered.get_fdata(dtype=np.float32)
                row["tissue_contrast"] = tissue_contrast(registered, template)
                row["deep_tissue_contrast"] = deep_tissue_contrast(registered, template)
                row["outcome"] = result.transform.name
        rows.append(row)
        print_row(row)
    table = pd.DataFrame(rows)
    table.to_csv(opts.out, sep="\t", index=False, float_format="%.4g")
    print(f"# {len(table)} images: {table['seconds'].sum():.1f} s in all")


if __name__ == "__main__":
    main()
