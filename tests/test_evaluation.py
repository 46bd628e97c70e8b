"""Tests of the evaluations: protocol metrics, rated images, and the commands end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bidsqc.cli.evaluate import main, markdown_table
from bidsqc.evaluation import (
    motion_protocol_metrics,
    rated_motion_metrics,
    read_scores,
    registration_metrics_table,
)

DEMO = Path(__file__).parents[1] / "data" / "demo"


def protocol_table() -> pd.DataFrame:
    """Two sources; on 'ixi' one clean image is called mild and one 2-4 image is missed."""
    rows = []
    for source, n in (("ixi", 4), ("ds", 2)):
        for i in range(n):
            base = f"/data/{source}/img{i}_T1w.nii.gz"
            rows.append((base, "clean", 0.0, 0, 0.5))
            for name, rms, grade in (("2-4", 7.0, 1), ("4-6", 11.7, 1), ("6-8", 16.0, 2)):
                rows.append((base, name, rms, grade, rms + 0.5))
    columns = ["base_image", "condition", "motion_rms_mm", "motion_grade_predicted", "motion_mm"]
    table = pd.DataFrame(rows, columns=columns)
    table.loc[0, "motion_grade_predicted"] = 1  # ixi img0 clean: false alarm
    table.loc[5, "motion_grade_predicted"] = 0  # ixi img1 2-4: missed
    return table


def test_protocol_metrics() -> None:
    metrics = motion_protocol_metrics(protocol_table()).set_index(["source", "range"])
    assert list(metrics.index.get_level_values("source").unique()) == ["all", "ds", "ixi"]
    ixi_24 = metrics.loc[("ixi", "2-4")]
    assert (ixi_24["n_clean"], ixi_24["n_moved"]) == (4, 4)
    assert ixi_24["sensitivity"] == pytest.approx(3 / 4)
    assert ixi_24["specificity"] == pytest.approx(3 / 4)
    assert ixi_24["balanced_accuracy"] == pytest.approx(3 / 4)
    assert metrics.loc[("ixi", "6-8"), "balanced_accuracy"] == pytest.approx((1 + 3 / 4) / 2)
    assert metrics.loc[("ds", "2-4"), "balanced_accuracy"] == 1
    assert metrics.loc[("all", "2-4"), "sensitivity"] == pytest.approx(5 / 6)
    overall = metrics.loc[("all", "all")]
    assert overall["mm_spearman"] == pytest.approx(1)
    assert overall["mm_r2"] == pytest.approx(1 - 0.25 / np.var([0, 7, 11.7, 16] * 6), rel=1e-3)
    assert overall["clean_called_severe"] == 0
    assert "| all | 2-4 |" in markdown_table(metrics.reset_index())


def test_rated_metrics_and_scores(tmp_path: Path) -> None:
    scores = tmp_path / "scores.tsv"
    scores.write_text("bids_name\tscore\na_T1w\t1\nb_T1w\t2\nc_T1w\t3\nd_T1w\t1\n")
    assert read_scores(scores) == {"a_T1w": 1, "b_T1w": 2, "c_T1w": 3, "d_T1w": 1}
    table = pd.DataFrame(
        {"score": [1, 2, 3, 1], "motion_grade": [0, 1, 2, 1], "motion_mm": [1.0, 6, 14, 5]}
    )
    metrics = rated_motion_metrics(table)
    assert metrics["motion_sensitivity"] == 1
    assert metrics["motion_specificity"] == 0.5
    assert metrics["severe_ba"] == 1
    assert metrics["mm_spearman"] == pytest.approx(0.9487, abs=1e-4)
    (tmp_path / "bad.tsv").write_text("name\tscore\n")
    with pytest.raises(ValueError, match="bids_name"):
        read_scores(tmp_path / "bad.tsv")


@pytest.mark.slow
def test_evaluate_motion_command(tmp_path: Path, capsys) -> None:
    images = tmp_path / "images.txt"
    images.write_text(
        f"{DEMO}/sub-01/anat/sub-01_run-1_T1w.nii.gz\n{DEMO}/sub-02/anat/sub-02_T1w.nii.gz\n"
    )
    scores = tmp_path / "scores.tsv"
    scores.write_text("bids_name\tscore\nsub-01_run-1_T1w\t1\nsub-01_run-2_T1w\t3\n")
    out = tmp_path / "eval"
    args = ["motion", "--images", str(images), "--bids", str(DEMO), "--scores", str(scores)]
    assert main([*args, "--out", str(out), "--repeats", "1", "--jobs", "2"]) == 0
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(predictions) == 8
    assert sorted(predictions["condition"].unique()) == ["2-4", "4-6", "6-8", "clean"]
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert set(metrics["source"]) == {"all", "demo"}
    assert "| all | 6-8 |" in capsys.readouterr().out
    rated = pd.read_csv(out / "rated_predictions.tsv", sep="\t").set_index("bids_name")
    assert rated.loc["sub-01_run-2_T1w", "motion_mm"] > rated.loc["sub-01_run-1_T1w", "motion_mm"]
    assert json.loads((out / "rated_metrics.json").read_text())["n_images"] == 2
    with pytest.raises(SystemExit, match="2"):
        main(["motion", "--out", str(out)])


def test_registration_metrics_table_compares_network_and_measures() -> None:
    rows = []
    for i in range(3):
        image = f"/data/ixi/img{i}_T1w.nii.gz"
        rows.append(("template", image, "aligned", 0.0, 0.1 + 0.1 * i, 0.5, 0.9, 2.0, 1.2))
        for name, rms in (("0.5-2", 1.0), ("2-4", 3.0), ("4-8", 6.0), ("8-20", 12.0)):
            # The network ranks every misaligned image above every aligned one; the Dice
            # only from 4 mm on.
            dice = 0.9 if rms < 4 else 0.7
            rows.append(("template", image, name, rms, 0.5 + rms / 30, rms, dice, 2 + rms, 1.1))
    columns = ["kind", "image", "condition", "rms_mm", "p_misregistered"]
    columns += ["registration_error_mm", "mask_dice", "mask_hd95_mm", "nmi"]
    table = pd.DataFrame(rows, columns=columns)
    table.insert(1, "source", "ixi")
    metrics = registration_metrics_table(table).set_index(["source", "score"])
    network = metrics.loc[("all", "network")]
    assert network["auc_2-4"] == 1.0 and network["auc_8-20"] == 1.0
    assert network["spearman"] == pytest.approx(1.0)
    assert network["aligned_flagged"] == pytest.approx(0.0)
    dice = metrics.loc[("all", "mask_dice")]
    assert dice["auc_2-4"] == 0.5 and dice["auc_4-8"] == 1.0
    assert np.isnan(dice["aligned_flagged"])
    assert ("ixi", "nmi") in metrics.index


@pytest.mark.slow
def test_evaluate_registration_command(tmp_path: Path, capsys) -> None:
    images = tmp_path / "images.txt"
    images.write_text(f"{DEMO}/sub-02/anat/sub-02_T1w.nii.gz\n")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        f"{DEMO}/sub-02/anat/sub-02_FLAIR.nii.gz\t{DEMO}/sub-02/anat/sub-02_T1w.nii.gz\n"
    )
    out = tmp_path / "eval"
    args = ["registration", "--images", str(images), "--pairs", str(pairs), "--out", str(out)]
    assert main([*args, "--repeats", "1"]) == 0
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(predictions) == 10  # 2 volumes x (aligned + 4 ranges)
    assert set(predictions["kind"]) == {"template", "coregistered"}
    assert predictions.loc[predictions["kind"] == "coregistered", "mask_dice"].isna().all()
    template = predictions[predictions["kind"] == "template"].set_index("condition")
    assert template.loc["8-20", "p_misregistered"] > template.loc["aligned", "p_misregistered"]
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert {"network", "mask_dice", "mask_hd95_mm", "nmi"} == set(metrics["score"])
    assert "| template | all | network |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2"):
        main(["registration", "--out", str(out)])
