"""Tests of the per-image decisions (bidsqc.decisions) and the group's exclusion lists."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bidsqc.decisions import DEFAULT_THRESHOLDS, Threshold, decide, load_thresholds
from bidsqc.outputs import QC_COLUMNS, write_group_decisions


def test_a_threshold_is_crossed_in_the_worse_direction():
    threshold = Threshold(review=0.5, fail=0.9)
    assert [threshold.level(value, "lower") for value in (0.1, 0.5, 0.7, 0.9, 1.0)] == [
        0, 1, 1, 2, 2,
    ]  # fmt: skip
    assert threshold.level(0.4, "higher") == 2  # higher is better: 0.4 <= 0.9 fails
    assert Threshold(review=0.6).level(0.7, "higher") == 0
    assert threshold.level(math.nan, "lower") == 0


def row(**values) -> dict:
    return {"status": "ok", **{column: math.nan for column in QC_COLUMNS}, **values}


def test_decide_takes_the_worst_level_and_lists_every_reason():
    decision = decide(row(motion_grade=2, p_misregistered=0.6), DEFAULT_THRESHOLDS, QC_COLUMNS)
    assert decision["decision"] == "fail"
    assert decision["reasons"] == "fail: motion_grade 2 >= 2; review: p_misregistered 0.6 >= 0.5"
    clean = decide(row(motion_grade=0, p_misregistered=0.1), DEFAULT_THRESHOLDS, QC_COLUMNS)
    assert clean == {"decision": "pass", "reasons": "n/a"}
    failed = decide({"status": "failed"}, DEFAULT_THRESHOLDS, QC_COLUMNS)
    assert failed["decision"] == "fail"


def test_decisions_follow_the_thresholds_file(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"snr": {"review": 10, "fail": 5}, "motion_grade": {"fail": 1}}))
    thresholds = load_thresholds(path, QC_COLUMNS)
    assert thresholds == {"snr": Threshold(10, 5), "motion_grade": Threshold(None, 1)}
    assert decide(row(snr=8, motion_grade=0), thresholds, QC_COLUMNS)["decision"] == "review"
    assert decide(row(snr=4, motion_grade=0), thresholds, QC_COLUMNS)["decision"] == "fail"
    assert decide(row(snr=20, motion_grade=1), thresholds, QC_COLUMNS)["decision"] == "fail"
    # The defaults are replaced, not extended: p_misregistered has no threshold any more.
    assert decide(row(snr=20, p_misregistered=1.0), thresholds, QC_COLUMNS)["decision"] == "pass"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"no_such_column": {"review": 1}}', "no thresholds for 'no_such_column'"),
        ('{"snr": {"warn": 1}}', "'review' and/or 'fail'"),
        ('{"snr": {"review": "high"}}', "numbers or null"),
        ("[1, 2]", "an object of columns"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_thresholds_files_are_refused(tmp_path, content, message):
    path = tmp_path / "thresholds.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_thresholds(path, QC_COLUMNS)


def test_group_decisions_list_failures_and_passing_participants(tmp_path):
    table = pd.DataFrame(
        {
            "filename": ["a.nii.gz", "b.nii.gz", "c.nii.gz", "d.nii.gz"],
            "participant_id": ["sub-01", "sub-01", "sub-02", "sub-03"],
            "session_id": ["n/a"] * 4,
            "modality": ["T1w"] * 4,
            "dataset": ["raw", "raw", "raw", "fmriprep"],
            "decision": ["pass", "fail", "review", "fail"],
            "reasons": ["n/a", "fail: motion_grade 2 >= 2", "review: x", "fail: y"],
        }
    )
    exclude, passing = write_group_decisions(table, tmp_path)
    excluded = pd.read_csv(exclude, sep="\t")
    assert excluded["filename"].tolist() == ["b.nii.gz", "d.nii.gz"]
    assert json.loads(exclude.with_suffix(".json").read_text())["reasons"]
    # sub-01 has a failing image; sub-03 has raw images in no row, only a derivative.
    assert passing.read_text() == "02\n"
    table["decision"] = "pass"
    exclude, passing = write_group_decisions(table, tmp_path)
    assert pd.read_csv(exclude, sep="\t").empty
    assert passing.read_text() == "01\n02\n"
