"""Does the registration-QC network read anatomy as misregistration?

    python benchmarks/registration_anatomy.py --out anatomy.tsv \
        --weights bidsqc/data/models/registration.pt run/registration.pt \
        --images qc/sub-*/anat/*_space-MNI152NLin2009cSym_res-2_desc-preproc_T1w.nii.gz

Each image is a registered image as a participant run writes it (``desc-preproc``, the 2 mm
template head box). It is judged as registered, then deformed by a smooth deformation with no
affine part (:class:`bidsqc.training.pairs.RandomNonlinearDeformation`, its largest displacement
in the brain fixed to each ``--max-mm``): the kind of difference from the template that an
affine registration leaves, as an atrophied or a child's brain does, while it stays in register.
A network that reads registration only should not move. Prints, per weights and size, the
median ``p_misregistered`` and how many images reach 0.5 and 0.9, and writes every value to
``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bidsqc.inference.inputs import normalise_intensity
from bidsqc.inference.models import load_network
from bidsqc.inference.registration import predict_registration
from bidsqc.training.pairs import RandomNonlinearDeformation, deformed, template_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", type=Path, required=True)
    parser.add_argument("--weights", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-mm", nargs="*", type=float, default=[4.0, 8.0, 12.0])
    parser.add_argument("--spacing-mm", type=float, default=16.0)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()

    networks = {str(path): load_network(path) for path in opts.weights}
    reference = template_reference()
    rows = []
    for index, path in enumerate(opts.images):
        volume = normalise_intensity(nb.load(path).get_fdata(dtype=np.float32))
        rng = np.random.default_rng([opts.seed, index])
        versions = {0.0: volume}
        for size in opts.max_mm:
            deformation = RandomNonlinearDeformation(1.0, (size, size), (opts.spacing_mm,) * 2)
            versions[size] = deformed(volume, deformation.sample(rng))
        for weights, network in networks.items():
            predictions = predict_registration(network, [(v, reference) for v in versions.values()])
            for size, prediction in zip(versions, predictions, strict=True):
                rows.append(
                    {
                        "image": str(path),
                        "weights": weights,
                        "max_mm": size,
                        "p_misregistered": prediction.p_misregistered,
                        "registration_error_mm": prediction.error_mm,
                    }
                )
    table = pd.DataFrame(rows)
    table.to_csv(opts.out, sep="\t", index=False, float_format="%.4f")
    summary = table.groupby(["weights", "max_mm"])["p_misregistered"].agg(
        median="median",
        at_least_0_5=lambda p: int((p >= 0.5).sum()),
        at_least_0_9=lambda p: int((p >= 0.9).sum()),
        images="size",
    )
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
