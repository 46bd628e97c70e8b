"""Time the indexing of a large BIDS dataset and the start-up of one array task on it.

    python benchmarks/indexing.py                    # 10,000 generated subjects
    python benchmarks/indexing.py --subjects 2600    # the size of mriqc#922's dataset

The dataset is generated in a temporary folder: each subject has an anatomical session (T1w
and FLAIR with their sidecars) and a functional run, all empty files, as pybids only reads
names. Two figures are printed:

- **full index**: ``init_layout`` of the whole dataset, in this process, as a job without
  ``--participant-label`` does it;
- **task start-up**: a fresh ``python`` process that parses the command line of one array
  task (``--participant-label``), finds its images and builds its nipype graph, up to the
  moment it would start running nodes. That is what each of 10,000 array tasks pays.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The files of each generated subject (``{s}`` is its label).
SUBJECT_FILES = (
    "anat/sub-{s}_T1w.nii.gz",
    "anat/sub-{s}_T1w.json",
    "anat/sub-{s}_FLAIR.nii.gz",
    "anat/sub-{s}_FLAIR.json",
    "func/sub-{s}_task-rest_bold.nii.gz",
    "func/sub-{s}_task-rest_bold.json",
)

#: One array task up to the start of its graph, in a process of its own.
TASK_START_UP = """
import sys
from bidsqc.cli.parser import parse_args
from bidsqc.cli.participant import build_workflow, discover_images

opts = parse_args(sys.argv[1:])
subjects, images = discover_images(opts)
workflow = build_workflow(opts, images, opts.output_dir / "logs")
print(len(images), len(workflow.list_node_names()))
"""


def generate_dataset(root: Path, n_subjects: int) -> list[str]:
    """A BIDS dataset of ``n_subjects`` subjects of empty files; their labels."""
    root.mkdir(parents=True)
    description = {"Name": "indexing benchmark", "BIDSVersion": "1.9.0"}
    (root / "dataset_description.json").write_text(json.dumps(description))
    labels = [f"{index:05d}" for index in range(1, n_subjects + 1)]
    for label in labels:
        for relpath in SUBJECT_FILES:
            path = root / f"sub-{label}" / relpath.format(s=label)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}" if path.suffix == ".json" else "")
    return labels


def time_full_index(bids: Path) -> tuple[float, int]:
    """Seconds to index the whole dataset, and how many T1w images it finds."""
    from bidsqc.discovery import init_layout

    start = time.perf_counter()
    layout = init_layout(bids, validate=False)
    seconds = time.perf_counter() - start
    return seconds, len(layout.get(suffix="T1w", extension=".nii.gz"))


def time_task_start_up(bids: Path, out: Path, label: str) -> tuple[float, str]:
    """Seconds from a fresh interpreter to the built graph of one participant."""
    command = [sys.executable, "-c", TASK_START_UP, str(bids), str(out), "participant"]
    command += ["--participant-label", label, "--skip-bids-validation"]
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=3, help="array tasks to time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        bids = Path(scratch) / "bids"
        start = time.perf_counter()
        labels = generate_dataset(bids, args.subjects)
        n_files = args.subjects * len(SUBJECT_FILES)
        print(
            f"generated {args.subjects} subjects, {n_files} files: "
            f"{time.perf_counter() - start:.1f} s"
        )

        seconds, n_t1w = time_full_index(bids)
        print(f"full index: {seconds:.1f} s ({n_t1w} T1w images found)")

        picks = [
            labels[round(i * (len(labels) - 1) / max(args.tasks - 1, 1))] for i in range(args.tasks)
        ]
        times = []
        for label in picks:
            seconds, found = time_task_start_up(bids, Path(scratch) / "out", label)
            n_images, n_nodes = found.split()
            print(
                f"task start-up, sub-{label}: {seconds:.2f} s ({n_images} images, {n_nodes} nodes)"
            )
            times.append(seconds)
        print(f"task start-up: median {statistics.median(times):.2f} s, max {max(times):.2f} s")


if __name__ == "__main__":
    main()
