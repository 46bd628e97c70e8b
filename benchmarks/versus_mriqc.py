"""bidsqc and MRIQC side by side on the same T1w images: one image at a time, as a user who runs
one subject waits for it, each run from an empty work directory.

    bash ../shared/peers/mriqc_setup.sh PEER           # once: MRIQC 24.0.2, offline, and PEER/bids
    python benchmarks/versus_mriqc.py --peer PEER       # every participant of PEER/bids
    python benchmarks/versus_mriqc.py --peer PEER --participant-label 01 --repeats 5

MRIQC runs as ``../shared/peers/mriqc_run.sh`` runs it (its stand-ins for ANTs, AFNI and
SynthStrip first on the PATH, ``--nprocs 2 --omp-nthreads 2``); bidsqc with its defaults. For
each image it prints each tool's wall time (bidsqc's median over ``--repeats``) and the peak
memory of its largest process, and how many times faster bidsqc was.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from timing import Timed, run_timed


def mriqc_environment(peer: Path) -> dict[str, str]:
    """The environment ``mriqc_run.sh`` gives MRIQC."""
    return os.environ | {
        "PATH": f"{peer / 'bin'}:{peer / 'venv' / 'bin'}:{os.environ['PATH']}",
        "TEMPLATEFLOW_HOME": str(peer / "templateflow"),
        "TEMPLATEFLOW_AUTOUPDATE": "0",
        "NIPYPE_NO_ET": "1",
        "MRIQC_CACHE_PATH": str(peer / "cache"),
        "MPLBACKEND": "Agg",
    }


def run_mriqc(peer: Path, label: str, scratch: Path) -> Timed:
    command = [
        str(peer / "venv" / "bin" / "mriqc"),
        *(str(peer / "bids"), str(scratch / "mriqc_out"), "participant"),
        *("--participant-label", label, "--nprocs", "2", "--omp-nthreads", "2"),
        *("--no-sub", "--notrack", "-w", str(scratch / "mriqc_work"), "-m", "T1w"),
    ]
    return run_timed(command, env=mriqc_environment(peer), log=scratch / f"mriqc_{label}.log")


def run_bidsqc(peer: Path, label: str, scratch: Path) -> Timed:
    out = scratch / "bidsqc_out"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        "bidsqc",
        *(str(peer / "bids"), str(out), "participant", "--participant-label", label),
        *("--modalities", "T1w"),
    ]
    return run_timed(command, log=scratch / f"bidsqc_{label}.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", type=Path, required=True, help="mriqc_setup.sh's folder")
    parser.add_argument("--participant-label", nargs="+", help="default: every participant")
    parser.add_argument("--repeats", type=int, default=3, help="bidsqc runs per image")
    parser.add_argument("--keep-logs", type=Path, help="copy both tools' logs here")
    args = parser.parse_args()

    labels = args.participant_label or sorted(
        path.name.removeprefix("sub-") for path in (args.peer / "bids").glob("sub-*")
    )
    print(
        f"{'image':8} {'MRIQC s':>8} {'MB':>6} {'bidsqc s':>9} {'runs':>22} {'MB':>6} {'ratio':>6}"
    )
    for label in labels:
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            mriqc = run_mriqc(args.peer, label, scratch)
            runs = [run_bidsqc(args.peer, label, scratch) for _ in range(args.repeats)]
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in scratch.glob("*.log"):
                    shutil.copy(log, args.keep_logs)
        if mriqc.returncode or any(run.returncode for run in runs):
            codes = [mriqc.returncode, *(run.returncode for run in runs)]
            print(f"sub-{label}: a run failed (exit codes {codes}); see --keep-logs")
            continue
        seconds = statistics.median(run.seconds for run in runs)
        each = ", ".join(f"{run.seconds:.1f}" for run in runs)
        print(
            f"sub-{label:4} {mriqc.seconds:8.1f} {mriqc.peak_process_mb:6.0f} {seconds:9.1f}"
            f" {each:>22} {max(run.peak_process_mb for run in runs):6.0f}"
            f" {mriqc.seconds / seconds:5.1f}x"
        )


if __name__ == "__main__":
    main()
