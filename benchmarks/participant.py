"""Time the participant level end to end and report seconds per image and peak memory.

    python benchmarks/participant.py                      # the demo dataset
    python benchmarks/participant.py --bids /data/bids    # any BIDS dataset
    python benchmarks/participant.py --shared ../shared/data --split val
    python benchmarks/participant.py --shared ../shared/data --split val --count 100
    python benchmarks/participant.py --image ADNI_T1w.nii.gz --count 100  # one image, 100 times

``--shared`` builds a throw-away BIDS dataset of symlinks to the images listed in
``manifest.tsv`` (one participant per image), so the real validation images can be timed;
``--count N`` makes it N participants, going round the split's images as often as it takes;
``--image FILE --count N``, N participants that all hold that one image, to see how the time
grows with the size of a dataset. Every run starts from an empty work
directory: nothing is cached. The peak memory is that of the largest process (``timing.py``).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from timing import run_timed

DEMO = Path(__file__).parents[1] / "data" / "demo"


def bids_from_manifest(shared: Path, split: str, root: Path, count: int | None = None) -> Path:
    """A BIDS dataset of symlinks to the manifest's T1w and FLAIR images of ``split``, one
    participant each; ``count`` participants, going round those images, if given."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "shared", "BIDSVersion": "1.9.0"}')
    with open(shared / "manifest.tsv", newline="") as stream:
        rows = [
            row
            for row in csv.DictReader(stream, delimiter="\t")
            if row["split"] == split and row["modality"] in ("T1w", "FLAIR")
        ]
    for index, row in enumerate(itertools.islice(itertools.cycle(rows), count or len(rows))):
        label = f"{index:03d}{re.sub('[^A-Za-z0-9]', '', Path(row['file']).parent.name)}"
        target = root / f"sub-{label}" / "anat" / f"sub-{label}_{row['modality']}.nii.gz"
        target.parent.mkdir(parents=True)
        target.symlink_to((shared / row["file"]).resolve())
    return root


def bids_of_copies(image: Path, count: int, root: Path) -> Path:
    """A BIDS dataset of ``count`` participants whose T1w is a symlink to ``image``."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "copies", "BIDSVersion": "1.9.0"}')
    for index in range(count):
        target = root / f"sub-{index:04d}" / "anat" / f"sub-{index:04d}_T1w.nii.gz"
        target.parent.mkdir(parents=True)
        target.symlink_to(image.resolve())
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids", type=Path, default=DEMO)
    parser.add_argument("--shared", type=Path, help="shared data folder with manifest.tsv")
    parser.add_argument("--split", default="val")
    parser.add_argument("--image", type=Path, help="one T1w for every participant")
    parser.add_argument("--count", type=int, help="participants (with --shared or --image)")
    parser.add_argument("--nprocs", type=int, default=os.cpu_count())
    parser.add_argument("--keep", type=Path, help="copy the outputs (without work/) here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        bids = args.bids
        if args.shared:
            bids = bids_from_manifest(args.shared, args.split, Path(scratch) / "bids", args.count)
        elif args.image:
            bids = bids_of_copies(args.image, args.count or 1, Path(scratch) / "bids")
        out = Path(scratch) / "out"
        n_images = sum(1 for _ in bids.glob("sub-*/**/anat/*_T1w.nii*")) + sum(
            1 for _ in bids.glob("sub-*/**/anat/*_FLAIR.nii*")
        )
        command = ["bidsqc", str(bids), str(out), "participant", "--nprocs", str(args.nprocs)]
        timed = run_timed(command)
        tables = list(out.glob("sub-*/sub-*_qc.tsv"))
        statuses = [
            row["status"]
            for table in tables
            for row in csv.DictReader(open(table, newline=""), delimiter="\t")
        ]
        if args.keep:
            shutil.copytree(out, args.keep, ignore=shutil.ignore_patterns("work"))

    described = {args.shared: f"{args.shared} ({args.split})", args.image: f"{args.image} copies"}
    print(f"dataset: {described.get(args.shared or args.image, bids)}")
    print(f"images: {n_images}, ok: {statuses.count('ok')}, failed: {statuses.count('failed')}")
    print(f"exit code: {timed.returncode}, nprocs: {args.nprocs}")
    print(f"wall time: {timed.seconds:.1f} s, {timed.seconds / max(n_images, 1):.2f} s per image")
    print(f"peak memory of the largest process: {timed.peak_process_mb:.0f} MB")
    sys.exit(0 if timed.returncode in (0, 1) else timed.returncode)


if __name__ == "__main__":
    main()
