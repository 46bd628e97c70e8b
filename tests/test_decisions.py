"""Tests of the per-image decisions (bidsqc.decisions) and the group's exclusion lists."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from bidsqc.data import bundled_thresholds
from bidsqc.decisions import (
    ARTEFACT_REVIEW_THRESHOLDS,
    DEFAULT_THRESHOLDS,
    Threshold,
    decide,
    load_thresholds,
)
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS, QC_COLUMNS
from bidsqc.outputs.tables import write_group_decisions


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
    decision = decide(row(motion_grade=2, p_misregistered=0.95), DEFAULT_THRESHOLDS, QC_COLUMNS)
    assert decision["decision"] == "fail"
    assert decision["reasons"] == "fail: motion_grade 2 >= 2; review: p_misregistered 0.95 >= 0.9"
    clean = decide(row(motion_grade=0, p_misregistered=0.1), DEFAULT_THRESHOLDS, QC_COLUMNS)
    assert clean == {"decision": "pass", "reasons": "n/a"}
    failed = decide({"status": "failed"}, DEFAULT_THRESHOLDS, QC_COLUMNS)
    assert failed["decision"] == "fail"


def test_a_misregistration_sends_the_image_to_review_never_to_exclusion():
    """A registration bidsqc got wrong says nothing about the scan's quality."""
    for misregistered in (
        row(p_misregistered=1.0),
        row(rereg_mm=30.0),
        row(p_misregistered_to_t1w=1.0),
    ):
        assert decide(misregistered, DEFAULT_THRESHOLDS, QC_COLUMNS)["decision"] == "review"
    assert decide(row(p_misregistered=0.6), DEFAULT_THRESHOLDS, QC_COLUMNS)["decision"] == "pass"


@pytest.mark.parametrize("valid", ["n/a", math.nan, None])
def test_outputs_valid_for_the_geometry_cross_nothing(valid):
    """A table read back has NaN where it was written n/a: the group level decides again."""
    assert decide(row(not_assessed=valid), DEFAULT_THRESHOLDS, QC_COLUMNS)["decision"] == "pass"


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


# --- the artefact network's columns -------------------------------------------------------------

ARTEFACT_PROBABILITIES = tuple(ARTEFACT_PROBABILITY_COLUMNS.values())


def artefacts(quality_score: float = 9.0, **probabilities: float) -> dict:
    """A row with every artefact probability at 0.1 unless given, and ``quality_score``."""
    values = dict.fromkeys(ARTEFACT_PROBABILITIES, 0.1) | probabilities
    return row(motion_grade=0, p_misregistered=0.1, quality_score=quality_score, **values)


def test_default_thresholds_cover_the_artefact_columns():
    for column in ARTEFACT_PROBABILITIES:
        below = ARTEFACT_REVIEW_THRESHOLDS[column] - 1e-3
        assert decide(artefacts(**{column: below}), DEFAULT_THRESHOLDS, QC_COLUMNS) == {
            "decision": "pass",
            "reasons": "n/a",
        }
    levels = {
        q: decide(artefacts(q), DEFAULT_THRESHOLDS, QC_COLUMNS)["decision"] for q in (6.1, 6, 3)
    }
    assert levels == {6.1: "pass", 6: "review", 3: "fail"}


def test_a_likely_artefact_sends_the_image_to_review():
    decision = decide(artefacts(p_noise=0.7), DEFAULT_THRESHOLDS, QC_COLUMNS)
    noise = ARTEFACT_REVIEW_THRESHOLDS["p_noise"]
    assert decision == {"decision": "review", "reasons": f"review: p_noise 0.7 >= {noise:g}"}
    for column in ARTEFACT_PROBABILITIES:
        threshold = ARTEFACT_REVIEW_THRESHOLDS[column]
        at_threshold = decide(artefacts(**{column: threshold}), DEFAULT_THRESHOLDS, QC_COLUMNS)
        assert at_threshold["decision"] == "review"
        assert column in at_threshold["reasons"]
    # No artefact probability fails an image on its own.
    assert decide(artefacts(p_blur=1.0), DEFAULT_THRESHOLDS, QC_COLUMNS)["decision"] == "review"


@pytest.mark.parametrize(
    ("quality", "decision", "reasons"),
    [
        (9.0, "pass", "n/a"),
        (6.01, "pass", "n/a"),
        (6.0, "review", "review: quality_score 6 <= 6"),
        (4.2, "review", "review: quality_score 4.2 <= 6"),
        (3.0, "fail", "fail: quality_score 3 <= 3"),
        (2.5, "fail", "fail: quality_score 2.5 <= 3"),
    ],
)
def test_a_low_quality_score_reviews_then_fails(quality, decision, reasons):
    # Higher is better: a score at or below a threshold crosses it.
    assert decide(artefacts(quality), DEFAULT_THRESHOLDS, QC_COLUMNS) == {
        "decision": decision,
        "reasons": reasons,
    }


def test_artefact_reasons_come_worst_first():
    decision = decide(artefacts(2.5, p_noise=0.7, p_spike=0.9), DEFAULT_THRESHOLDS, QC_COLUMNS)
    assert decision["decision"] == "fail"
    spike, noise = ARTEFACT_REVIEW_THRESHOLDS["p_spike"], ARTEFACT_REVIEW_THRESHOLDS["p_noise"]
    assert decision["reasons"] == (
        f"fail: quality_score 2.5 <= 3; review: p_spike 0.9 >= {spike:g}; "
        f"review: p_noise 0.7 >= {noise:g}"
    )


def test_missing_artefact_columns_cross_nothing():
    missing = artefacts(math.nan, **dict.fromkeys(ARTEFACT_PROBABILITIES, math.nan))
    assert decide(missing, DEFAULT_THRESHOLDS, QC_COLUMNS) == {"decision": "pass", "reasons": "n/a"}
    # A row written before the artefact network existed has no such columns at all.
    old = {"status": "ok", "motion_grade": 0, "p_misregistered": 0.1}
    assert decide(old, DEFAULT_THRESHOLDS, QC_COLUMNS)["decision"] == "pass"


def test_the_documented_defaults_are_the_bundled_networks_thresholds():
    # docs/outputs.md must be updated with the thresholds of newly calibrated weights.
    text = (Path(__file__).parents[1] / "docs" / "outputs.md").read_text()
    artefact = ", ".join(f"{value:g}" for value in ARTEFACT_REVIEW_THRESHOLDS.values())
    assert f"| {artefact} |" in text
    assert f"is below {bundled_thresholds('motion')['p_motion']:g} " in text


def test_thick_slices_are_processed_with_their_outputs_not_assessed(tmp_path):
    """A processed 8 mm scan keeps its geometry in the row, has n/a for every output it was
    not validated on, and goes to review with the reason."""
    from bidsqc.discovery import AnatImage
    from bidsqc.outputs.tables import qc_row

    path = tmp_path / "sub-01_FLAIR.nii.gz"
    nb.save(nb.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([0.5, 0.5, 8.0, 1])), path)
    image = AnatImage(path, "sub-01/anat/sub-01_FLAIR.nii.gz", "01", None, "FLAIR", {}, None)
    outputs = {"cjv": 0.4, "motion_grade": 0, "rereg_mm": 2.5, "p_noise": 0.5}
    measured = qc_row(image, outputs, None)
    assert measured["slice_mm"] == 8.0 and measured["in_plane_mm"] == 0.5
    assert measured["not_assessed"] == (
        "slices of 8.0 mm: the networks and measures are validated on slices of up to 4.5 mm"
    )
    assert all(math.isnan(measured[column]) for column in outputs)
    assert measured["decision"] == "review"
    assert measured["reasons"].startswith("review: not assessed (slices of 8.0 mm")
    # On 6 mm slices the check of the registration and the noise hold, and can send the image
    # to review.
    nb.save(nb.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([0.5, 0.5, 6.0, 1])), path)
    measured = qc_row(image, outputs, None)
    assert measured["not_assessed"].endswith(
        "up to 4.5 mm, rereg_mm on up to 6.6 mm, p_noise on up to 6.6 mm"
    )
    assert measured["rereg_mm"] == 2.5 and measured["p_noise"] == 0.5
    assert math.isnan(measured["cjv"]) and math.isnan(measured["motion_grade"])
    assert "review: rereg_mm 2.5 >= 2" in measured["reasons"]
    assert "review: p_noise 0.5 >= " in measured["reasons"]
    nb.save(nb.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([0.5, 0.5, 4.0, 1])), path)
    assert qc_row(image, outputs, None)["cjv"] == 0.4


def test_a_scan_that_covers_too_little_of_the_brain_is_not_assessed(tmp_path):
    """A slab that misses the top or the bottom of the brain keeps its coverage in the row, has
    n/a for every other output, and goes to review with the reason, not to fail."""
    from bidsqc.discovery import AnatImage
    from bidsqc.outputs.tables import qc_row

    path = tmp_path / "sub-01_T1w.nii.gz"
    nb.save(nb.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([1.0, 1.0, 1.0, 1])), path)
    image = AnatImage(path, "sub-01/anat/sub-01_T1w.nii.gz", "01", None, "T1w", {}, None)
    outputs = {"cjv": 0.4, "quality_score": 2.0, "rereg_mm": 2.5, "brain_coverage": 0.7}
    measured = qc_row(image, outputs, None)
    assert measured["brain_coverage"] == 0.7
    assert measured["not_assessed"] == (
        "the scan covers 70.0% of the brain: the networks and measures are validated on scans "
        "that cover 97% or more"
    )
    assert all(math.isnan(measured[column]) for column in ("cjv", "quality_score", "rereg_mm"))
    assert measured["decision"] == "review"
    assert measured["reasons"] == f"review: not assessed ({measured['not_assessed']})"
    # Thick slices as well: both reasons.
    nb.save(nb.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([0.5, 0.5, 6.0, 1])), path)
    both = qc_row(image, outputs, None)["not_assessed"]
    assert both.startswith("the scan covers 70.0%") and "; slices of 6.0 mm" in both
    assert "rereg_mm on up to" not in both  # the coverage rules it out too
    # Enough of the brain: every output counts, and a low quality score fails the image.
    nb.save(nb.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([1.0, 1.0, 1.0, 1])), path)
    covered = qc_row(image, outputs | {"brain_coverage": 0.97}, None)
    assert covered["quality_score"] == 2.0 and covered["decision"] == "fail"
