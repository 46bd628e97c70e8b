"""Do the outputs hold on scans that cover only part of the brain?

    python benchmarks/partial_coverage.py --out coverage --nprocs 2 \
        --images ../shared/data/t1w/fullhead/dcm_qa_philips_enh_ADNI_MPRAGE_T1w.nii.gz …

A clinical slab is often planned short of the vertex or of the cerebellum. Each image is cut
as such a slab would cut it: its axial planes below a level are dropped (the bottom of the brain
missing) or those above one (the top missing), at ``--cuts`` shares of the height of its brain
(found by :func:`bidsqc.brain_extraction.extract_brain`, as a participant run finds it). The
copies, and each image uncut, form a BIDS dataset under ``--out`` that ``bidsqc participant``
and ``group`` then process. Prints, for every copy, the share of the template brain it covers
(``brain_coverage``), its decision and the artefact network's outputs beside those of its
uncut image, and writes the table to ``--out/coverage.tsv``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bidsqc.brain_extraction import extract_brain
from bidsqc.decisions import DEFAULT_THRESHOLDS, decide
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS, QC_COLUMNS
from bidsqc.outputs.tables import read_qc_table
from bidsqc.preprocessing import reorient_to_ras, resample_to_zoom

PROBABILITIES = list(ARTEFACT_PROBABILITY_COLUMNS.values())
#: The derivatives that hold each copy's outputs as measured, whether assessed or not.
DERIVATIVES = ("measures", "artefacts", "registration", "motion")


def brain_planes(img: nb.Nifti1Image) -> tuple[int, int]:
    """The lowest and highest axial planes of ``img`` (RAS+) that hold brain."""
    resampled = resample_to_zoom(img)
    brain = np.argwhere(extract_brain(resampled))
    bottom, top = (brain[:, 2].min() - 0.5, brain[:, 2].max() + 0.5)
    to_voxels = np.linalg.inv(img.affine) @ resampled.affine
    planes = [nb.affines.apply_affine(to_voxels, [0, 0, z])[2] for z in (bottom, top)]
    return round(planes[0]), round(planes[1])


def slab(img: nb.Nifti1Image, first: int, last: int) -> nb.Nifti1Image:
    """The axial planes ``first`` to ``last`` (included) of ``img`` (RAS+), where they lie."""
    affine = img.affine @ nb.affines.from_matvec(np.eye(3), [0, 0, first])
    return nb.Nifti1Image(np.asanyarray(img.dataobj)[:, :, first : last + 1], affine)


def write_copies(images: list[Path], cuts: list[float], bids: Path) -> None:
    """The images, numbered, each uncut (``sub-<number>xfull``) and cut at each share of its
    brain's height from the bottom (``…xbottom<percent>``) and from the top (``…xtop<percent>``)."""
    bids.mkdir(parents=True, exist_ok=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "partial coverage", "BIDSVersion": "1.9.0"})
    )
    for index, path in enumerate(images):
        img = reorient_to_ras(nb.load(path))
        bottom, top = brain_planes(img)
        last = img.shape[2] - 1
        copies = {"full": (0, last)}
        for share in cuts:
            planes = round(share * (top - bottom))
            copies[f"bottom{share * 100:.0f}"] = (bottom + planes, last)
            copies[f"top{share * 100:.0f}"] = (0, top - planes)
        for cut, (first, final) in copies.items():
            folder = bids / f"sub-{index}x{cut}" / "anat"
            folder.mkdir(parents=True, exist_ok=True)
            nb.save(slab(img, first, final), folder / f"sub-{index}x{cut}_T1w.nii.gz")
        print(f"{index}: {path} (brain in planes {bottom}-{top})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", type=Path, required=True)
    parser.add_argument(
        "--cuts", nargs="+", type=float, default=[0.05, 0.1, 0.15, 0.2, 0.3],
        help="shares of the brain's height to cut off",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nprocs", type=int, default=os.cpu_count())
    opts = parser.parse_args()

    bids, out = opts.out / "bids", opts.out / "bidsqc"
    write_copies(opts.images, opts.cuts, bids)
    for level in ("participant", "group"):
        command = ["bidsqc", str(bids), str(out), level, "-w", str(opts.out / "work")]
        subprocess.run([*command, "--nprocs", str(opts.nprocs)], check=False)
    table = read_qc_table(out / "group_T1w.tsv").set_index("participant_id")
    rows = []
    for participant, row in table.iterrows():
        copy = participant.removeprefix("sub-")
        outputs = as_measured(out / participant / "anat") if row["status"] == "ok" else {}
        verdict = decide({"status": row["status"], **outputs}, DEFAULT_THRESHOLDS, QC_COLUMNS)
        rows.append(
            {"copy": copy, "image": copy.partition("x")[0], **outputs,
             "decision": row["decision"], "as_measured": verdict["decision"],
             "reasons_as_measured": verdict["reasons"]}
        )  # fmt: skip
    result = pd.DataFrame(rows).set_index("copy")
    uncut = result.loc[result.index.str.endswith("full")].set_index("image")
    change = result[PROBABILITIES] - uncut.loc[result["image"], PROBABILITIES].to_numpy()
    result["largest_change"] = change.abs().max(axis=1)
    result["quality_uncut"] = uncut.loc[result["image"], "quality_score"].to_numpy()
    columns = [
        "brain_coverage", "rereg_mm", "p_misregistered", "quality_score", "quality_uncut",
        "largest_change", "decision", "as_measured", "reasons_as_measured",
    ]  # fmt: skip
    result = result.sort_values("brain_coverage")[columns]
    result.to_csv(opts.out / "coverage.tsv", sep="\t", float_format="%.4g")
    with pd.option_context("display.width", 250, "display.max_colwidth", 80):
        print(result.round(3).to_string())


def as_measured(folder: Path) -> dict[str, float]:
    """A copy's outputs as its derivatives hold them, before any is judged not assessed."""
    outputs = {}
    for derivative in DERIVATIVES:
        (path,) = folder.glob(f"*_desc-{derivative}_T1w.json")
        values = json.loads(path.read_text())
        outputs |= {key: value for key, value in values.items() if key in QC_COLUMNS}
    return outputs


if __name__ == "__main__":
    main()
