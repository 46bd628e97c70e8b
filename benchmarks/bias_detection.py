"""How well is a strong bias field detected: the artefact network against the N4 measure.

    python benchmarks/bias_detection.py --images val.txt --out bias_detection --jobs 2

Every image is written clean and once with a random order-3 bias field of TorchIO's default
strength (every coefficient but the constant drawn U(-0.5, 0.5)), simulated at native
resolution and preprocessed onto the 1 mm head box as ``bidsqc-evaluate artefact`` does. For
each sample it prints the network's ``p_inhomogeneity`` and ``inu_range``, the 5-95 % spread of
the N4 field in the template brain, estimated as the measures node does on the 2 mm grid (here
the 1 mm box averaged 2 x 2 x 2), then the AUC of each, biased against clean, and the spread of
the simulated fields' gain in the template brain.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torchio as tio

from bidsqc.data import load_template
from bidsqc.inference.artefacts import predict_artefacts
from bidsqc.inference.models import load_bundled_network
from bidsqc.measures.iqms import inu_range
from bidsqc.preprocessing import estimate_bias_field
from bidsqc.training.metrics import roc_auc
from bidsqc.training.samples import TemplateSpaceSampleWriter, artefact_corruption
from bidsqc.training.simulation import RandomBiasField, RandomCorruption, generate_corrupted_dataset

CONDITIONS = {
    "clean": RandomCorruption([]),
    "bias-strong": RandomCorruption([RandomBiasField(coefficients=(0.5, 0.5))], 1.0),
}


def brain_gain_spread(coefficients: list[float], order: int) -> float:
    """5-95 % spread, in the template brain, of a field drawn over the 2 mm box, normalised to
    its brain mean (an approximation: the simulation draws it over the native field of view)."""
    template = load_template(2)
    field = tio.BiasField.generate_bias_field(np.zeros((1, *template.shape)), order, coefficients)
    gain = field[template.brain_mask]
    low, high = np.percentile(gain / gain.mean(), [5, 95])
    return float(high - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="text file, one image a line")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    images = args.images.read_text().split()
    template = load_template(2)
    network = load_bundled_network("artefact")
    rows = []
    for name, corruption in CONDITIONS.items():
        labels = generate_corrupted_dataset(
            images,
            args.out / name,
            n_per_image=1,
            seed=args.seed,
            corruption=corruption,
            n_jobs=args.jobs,
            save_sample=TemplateSpaceSampleWriter(resolution=1, register_copies=True),
        )
        for filename in pd.read_csv(labels, sep="\t")["filename"]:
            volume = np.load(labels.parent / filename).astype(np.float32)
            pairs_of_voxels = [n for size in template.shape for n in (size, 2)]
            coarse = volume.reshape(pairs_of_voxels).mean(axis=(1, 3, 5))
            field = estimate_bias_field(coarse, template.brain_mask, template.zooms)
            rows.append(
                {
                    "condition": name,
                    "sample": filename,
                    "p_inhomogeneity": predict_artefacts(network, volume).probabilities[2],
                    "inu_range": inu_range(field, template.brain_mask),
                }
            )
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "bias_detection.tsv", sep="\t", index=False)
    print(table.groupby("condition")[["p_inhomogeneity", "inu_range"]].median().to_string())
    biased = table["condition"] != "clean"
    for column in ("p_inhomogeneity", "inu_range"):
        print(f"AUC of {column}, strong bias against clean: {roc_auc(biased, table[column]):.3f}")
    rng = np.random.default_rng(args.seed)
    (training,) = [a for a in artefact_corruption().artefacts if isinstance(a, RandomBiasField)]
    for label, random_field in (
        ("TorchIO default", CONDITIONS["bias-strong"].artefacts[0]),
        ("bidsqc training", training),
    ):
        spreads = [
            brain_gain_spread(field.coefficients, field.order)
            for field in (random_field.sample(rng) for _ in range(50))
        ]
        low, median, high = np.percentile(spreads, [10, 50, 90])
        print(f"brain gain spread, {label} fields: median {median:.2f} ({low:.2f}-{high:.2f})")


if __name__ == "__main__":
    main()
