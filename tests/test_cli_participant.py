"""Tests of the participant level's bookkeeping (bidsqc.cli.run): crash reports, the console."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from bidsqc.cli.parser import parse_args
from bidsqc.cli.participant import read_crash_reports
from bidsqc.cli.workers import prepare_workers


def test_crashes_are_attributed_to_image_and_coregistration_branches(tmp_path):
    crashes = {
        "crash-1.txt": (
            "Node: bidsqc_wf.single_subject_02_wf.anat_qc_sub_02_T1w_wf.register",
            "ValueError: registration to the template is implausible",
        ),
        "crash-2.txt": (
            "Node: bidsqc_wf.single_subject_02_wf.flair_coreg_sub_02_FLAIR_wf.coregister",
            "RuntimeError: ITK could not read the transform",
        ),
        "crash-3.txt": ("Node: bidsqc_wf.unrelated", "OSError: disk full"),
    }
    for name, (node, error) in crashes.items():
        (tmp_path / name).write_text(f"{node}\nTraceback (most recent call last):\n{error}\n")
    failures = read_crash_reports(tmp_path)
    assert set(failures) == {"anat_qc_sub_02_T1w_wf", "flair_coreg_sub_02_FLAIR_wf"}
    assert failures["anat_qc_sub_02_T1w_wf"][1] == (
        "register: ValueError: registration to the template is implausible"
    )
    assert failures["flair_coreg_sub_02_FLAIR_wf"][1].startswith("coregister: RuntimeError")


def test_each_failed_image_is_one_console_line_without_a_traceback(make_bids, tmp_path):
    files = [f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz" for i in (1, 2, 3)]
    bids = make_bids(files)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "bidsqc", str(bids), str(out), "participant", "--nprocs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    console = result.stdout + result.stderr
    assert "Traceback" not in console
    assert "nipype" not in console  # its workers, in processes of their own, are quiet too
    failed = [line for line in console.splitlines() if " failed: " in line]
    assert len(failed) == 3
    for relpath, line in zip(files, sorted(failed), strict=True):
        assert relpath in line and "empty file" in line
        crash = re.search(r"details: (logs/crash-[^)]+\.txt)", line).group(1)
        assert (out / crash).is_file()
    assert "WARNING: 0 of 3 images processed" in console


def test_workers_read_their_nipype_settings_from_the_work_directory(
    make_bids, tmp_path, monkeypatch
):
    """nipype's settings reach the workers (new interpreters) through nipype.cfg; a SLURM run
    starts no forkserver."""
    for variable in ("NIPYPE_CONFIG_DIR", "NIPYPE_NO_ET"):  # restored after the test
        monkeypatch.delenv(variable, raising=False)
    plugin_file = tmp_path / "slurm.yml"
    plugin_file.write_text("plugin: SLURM\n")
    bids = make_bids(["sub-01/anat/sub-01_T1w.nii.gz"])
    work = tmp_path / "work"
    opts = parse_args(
        [str(bids), str(tmp_path / "out"), "participant", "-w", str(work), "-v"]
        + ["--use-plugin", str(plugin_file)]
    )
    plugin = prepare_workers(opts)
    assert plugin == {"plugin": "SLURM", "plugin_args": {}}
    settings = (work / "nipype.cfg").read_text()
    assert "check_version = false" in settings
    assert "workflow_level = WARNING" in settings
    assert os.environ["NIPYPE_CONFIG_DIR"] == str(work)
