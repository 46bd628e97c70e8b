"""Build a BIDS dataset of every real scan in ``../shared/data``, with its labels file.

    python benchmarks/real_scans.py --shared ../shared/data --out real
    bidsqc-evaluate real --bids real/bids --labels real/labels.tsv --out real/eval

The dataset holds symlinks (nothing is copied): the ``val`` split of ``manifest.tsv``, its
full-head ``train`` images (for the registration figures only: the networks were trained on
them), the elderly heads of ``eval_only/nichart_elderly`` and the rated MR-ART scans of
``real_motion/mrart``. A FLAIR and a T1w of one session share a BIDS session, so the FLAIR is
co-registered to its T1w as in a user's dataset. ``labels.tsv`` has the MR-ART
neuroradiologists' scores (``n/a`` for every other scan) and each scan's source.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

MRART_ACQ = {"std": "standard", "hm1": "headmotion1", "hm2": "headmotion2"}


def _link(bids: Path, subject: str, session: str | None, suffix: str, target: Path) -> str:
    stem = f"sub-{subject}" + (f"_ses-{session}" if session else "") + suffix
    folder = bids / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.nii.gz").symlink_to(target.resolve())
    return stem


def _manifest_scans(shared: Path, bids: Path) -> list[tuple[str, str, str]]:
    with open(shared / "manifest.tsv", newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t"))
    labels = []
    for index, row in enumerate(rows):
        full_head = row["head"].startswith("full")
        if row["modality"] not in ("T1w", "FLAIR") or not (row["split"] == "val" or full_head):
            continue
        path = Path(row["file"])
        source = re.split(r" \(|,", row["source"])[0]
        source += " (val)" if row["split"] == "val" else " (train: registration only)"
        if match := re.match(r"patient(\d+)", path.parent.name):
            subject, session = f"mslub{match.group(1)}", path.name.split("_")[0]
        else:
            subject, session = f"{index:03d}{re.sub('[^A-Za-z0-9]', '', path.parent.name)}", None
        labels.append(
            (_link(bids, subject, session, f"_{row['modality']}", shared / path), "n/a", source)
        )
    return labels


def _nichart_scans(shared: Path, bids: Path) -> list[tuple[str, str, str]]:
    labels = []
    for path in sorted((shared / "eval_only" / "nichart_elderly").glob("subj*_*.nii.gz")):
        subject, modality = path.name.removesuffix(".nii.gz").split("_")
        stem = _link(bids, f"nichart{subject.removeprefix('subj')}", None, f"_{modality}", path)
        labels.append((stem, "n/a", "NiChart elderly (eval only)"))
    return labels


def _mrart_scans(shared: Path, bids: Path) -> list[tuple[str, str, str]]:
    folder = shared / "real_motion" / "mrart"
    labels = []
    with open(folder / "labels.tsv", newline="") as stream:
        for row in csv.DictReader(stream, delimiter="\t"):
            subject, acq = re.match(r"mrart(\d+)(std|hm1|hm2)_", row["file"]).groups()
            score = re.search(r"score (\d)", row["label_source"]).group(1)
            stem = _link(bids, subject, None, f"_acq-{MRART_ACQ[acq]}_T1w", folder / row["file"])
            labels.append((stem, score, "MR-ART (real motion)"))
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--out", type=Path, required=True, help="a new folder")
    args = parser.parse_args()
    bids = args.out / "bids"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(
        '{"Name": "real scans of ../shared/data", "BIDSVersion": "1.9.0"}\n'
    )
    labels = [
        *_manifest_scans(args.shared, bids),
        *_nichart_scans(args.shared, bids),
        *_mrart_scans(args.shared, bids),
    ]
    with open(args.out / "labels.tsv", "w", newline="") as stream:
        writer = csv.writer(stream, delimiter="\t", lineterminator="\n")
        writer.writerow(["bids_name", "score", "source"])
        writer.writerows(labels)
    print(f"{len(labels)} scans in {bids}, labels in {args.out / 'labels.tsv'}")


if __name__ == "__main__":
    main()
