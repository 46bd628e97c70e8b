"""Tests of the participant level's bookkeeping (bidsqc.cli.run): crash reports."""

from __future__ import annotations

from bidsqc.cli.participant import read_crash_reports


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
