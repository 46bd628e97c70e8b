"""Why is ghosting missed on unseen subjects: the ghost's axis, its intensity, the skull?

    python benchmarks/ghosting_factors.py --out ghosting_factors --jobs 2 \\
        --images ../shared/data/eval_only/nichart_elderly/subj0*_T1w.nii.gz

Every image is written clean and with 2 ghosts along each voxel axis of its native grid in
turn, at the two severities of ``bidsqc-evaluate artefact`` (mild 0.3, moderate 0.6), each copy
simulated at native resolution, registered itself and resampled onto the 1 mm head box as the
pipeline does. The same is done to the image skull-stripped first (zero outside
:func:`brain_of_clean_image`), as the skull-stripped training and ``val`` images are, so that
the ghosts land in an empty background. It prints each array axis's direction and voxel size,
then per variant, axis and level the network's AUC against the clean images, its ``p_ghosting``
on both, and the highest ``p_ghosting`` among the tiles of air that the image's answer leaves out
(less than ``MIN_BRAIN_FRACTION`` of brain). ``--weights`` checks other artefact weights on the
same samples (a rerun reuses them).

With two ghosts the ghost is the image shifted by half the field of view along the axis, so
whether it falls on the brain or in the air around it depends on the field of view. For every
image, and for the ``--compare`` images (e.g. some of the training split), it prints the share
of that shifted copy's energy that falls on the brain, per axis.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import torch

from bidsqc.data import MODELS_DIR, head_box_brain_mask
from bidsqc.inference.models import load_network
from bidsqc.inference.tiles import (
    MIN_BRAIN_FRACTION,
    overview,
    tile_fractions,
    tile_origins,
    tiles_in_context,
)
from bidsqc.loading import load_anatomical
from bidsqc.networks import ARTEFACT_NAMES, ArtefactNet
from bidsqc.preprocessing import reorient_to_ras
from bidsqc.training.evaluation.artefact import ARTEFACT_LEVELS, predict_artefact_samples
from bidsqc.training.evaluation.conditions import CLEAN, auc, generate_conditions
from bidsqc.training.samples import TemplateSpaceSampleWriter, brain_of_clean_image
from bidsqc.training.simulation import Ghosting, RandomArtefact, RandomCorruption

#: Ghosts per copy: the strongest single ghost the severities allow (strength = s / 2).
NUM_GHOSTS = 2


class GhostingAlongAxis(RandomArtefact):
    """Ghosting of :data:`NUM_GHOSTS` ghosts along one voxel axis, at an exact severity."""

    def __init__(self, axis: int, severity: float) -> None:
        self.axis = axis
        self.strength = severity * Ghosting.full_scale

    def sample(self, rng: np.random.Generator) -> Ghosting:
        return Ghosting(NUM_GHOSTS, self.axis, self.strength * NUM_GHOSTS)


def skull_stripped(images: list[Path], out_dir: Path) -> list[Path]:
    """Each image in RAS+, zero outside its brain, written into ``out_dir`` (kept for reruns)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stripped = []
    for path in images:
        destination = out_dir / path.name
        if not destination.exists():
            image = reorient_to_ras(load_anatomical(path))
            data = np.asarray(image.dataobj, dtype=np.float32) * brain_of_clean_image(image)
            nb.save(nb.Nifti1Image(data, image.affine), destination)
        stripped.append(destination)
    return stripped


def native_axes(image: Path) -> str:
    """Each array axis as the simulation sees it: its direction and voxel size (``L 2.0``)."""
    img = load_anatomical(image)
    codes, zooms = nb.aff2axcodes(img.affine), img.header.get_zooms()[:3]
    return ", ".join(
        f"axis{axis} {code} {zoom:.1f} mm"
        for axis, (code, zoom) in enumerate(zip(codes, zooms, strict=True))
    )


def ghost_on_brain(image: Path) -> list[float]:
    """Per array axis, the share of the energy of the image shifted by half its field of view
    (the ghost of :data:`NUM_GHOSTS` ghosts) that falls on its brain (RAS+ axes)."""
    img = reorient_to_ras(load_anatomical(image))
    data, brain = np.asarray(img.dataobj, dtype=np.float32), brain_of_clean_image(img)
    shares = []
    for axis in range(3):
        ghost = np.roll(data, data.shape[axis] // 2, axis=axis) ** 2
        shares.append(float(ghost[brain].sum() / ghost.sum()))
    return shares


def air_tile_ghosting(network: ArtefactNet, sample: str) -> float:
    """The highest ``p_ghosting`` among a sample's tiles with less than
    :data:`MIN_BRAIN_FRACTION` of brain, which the image's answer leaves out."""
    volume = np.load(sample).astype(np.float32)
    origins = tile_origins(volume.shape)
    air = tile_fractions(head_box_brain_mask(1) & (volume > 0), origins) < MIN_BRAIN_FRACTION
    tiles = tiles_in_context(volume, origins[air], overview(volume))
    with torch.inference_mode():
        logits = network(torch.from_numpy(tiles)).presence_logits
    return float(torch.sigmoid(logits[:, ARTEFACT_NAMES.index("ghosting")]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, nargs="+", required=True)
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="overlap only")
    parser.add_argument("--weights", type=Path, default=MODELS_DIR / "artefact.pt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    conditions = {CLEAN: (RandomCorruption([]), 1)}
    for axis in range(3):
        for level, severity in ARTEFACT_LEVELS.items():
            artefact = GhostingAlongAxis(axis, severity)
            conditions[f"axis{axis}-{level}"] = (RandomCorruption([artefact], 1.0), 1)
    variants = {
        "as acquired": args.images,
        "stripped first": skull_stripped(args.images, args.out / "stripped_images"),
    }
    network = load_network(args.weights)
    tables = []
    for variant, images in variants.items():
        table = generate_conditions(
            images,
            args.out / variant.replace(" ", "_"),
            conditions,
            seed=args.seed,
            n_jobs=args.jobs,
            save_sample=TemplateSpaceSampleWriter(resolution=1, register_copies=True),
        )
        table = predict_artefact_samples(network, table).assign(variant=variant)
        table["air_tiles_p_ghosting"] = [air_tile_ghosting(network, path) for path in table["path"]]
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(args.out / "ghosting_factors.tsv", sep="\t", index=False)

    axes = sorted({native_axes(image) for image in args.images})
    print("array axes of the images (the stripped copies are in RAS+):", "; ".join(axes))
    rows = []
    for variant, samples in table.groupby("variant", sort=False):
        clean = samples["condition"] == CLEAN
        baseline = samples.loc[clean, "p_ghosting"]
        for condition in conditions:
            if condition == CLEAN:
                continue
            ghosted = samples["condition"] == condition
            rows.append({
                "variant": variant,
                "condition": condition,
                "n": int(ghosted.sum()),
                "auc_vs_clean": auc(ghosted, clean, samples["p_ghosting"]),
                "median_p_ghosting": samples.loc[ghosted, "p_ghosting"].median(),
                "median_clean": baseline.median(),
                "max_clean": baseline.max(),
                "median_air_tiles": samples.loc[ghosted, "air_tiles_p_ghosting"].median(),
                "median_air_tiles_clean": samples.loc[clean, "air_tiles_p_ghosting"].median(),
            })  # fmt: skip
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.3f"))

    print("share of the ghost's energy on the brain, axis 0 / 1 / 2:")
    for label, images in (*variants.items(), ("compared", args.compare)):
        for image in images:
            shares = " / ".join(f"{share:.2f}" for share in ghost_on_brain(image))
            print(f"  {label:15s} {image.name:40s} {shares}")


if __name__ == "__main__":
    main()
