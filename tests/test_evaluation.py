"""Tests of the evaluations: protocol metrics, rated images, and the commands end to end."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
import torch

from bidsqc.data import head_box_brain_mask
from bidsqc.networks import ARTEFACT_NAMES, ArtefactNet, MotionNet
from bidsqc.outputs.columns import ARTEFACT_COLUMNS, ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.training.cli.evaluate import build_parser, evaluate_artefact, main, markdown_table
from bidsqc.training.evaluation.artefact import (
    ARTEFACT_LEVELS,
    ArtefactAtSeverity,
    artefact_metrics_table,
    artefact_summary,
    generate_artefact_protocol_samples,
    predict_artefact_samples,
)
from bidsqc.training.evaluation.motion import (
    motion_protocol_metrics,
    predict_motion_samples,
)
from bidsqc.training.evaluation.real import (
    read_real_labels,
    real_scan_agreement,
    real_scan_summary,
    run_bidsqc,
)
from bidsqc.training.evaluation.registration import registration_metrics_table
from bidsqc.training.simulation import ARTEFACTS, Ghosting


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
    assert ("all", "rms-0-4") not in metrics.index
    assert "| all | 2-4 |" in markdown_table(metrics.reset_index())


def test_protocol_metrics_of_small_motion_stand_apart() -> None:
    table = protocol_table()
    small = table[table["condition"] == "clean"].assign(
        condition="rms-0-4", motion_rms_mm=[0.5, 1.5, 2.5, 3.5, 1.0, 3.0]
    )
    # The network reads small motion in reverse: only the rms-0-4 row shows it.
    small["motion_mm"] = 4 - small["motion_rms_mm"]
    metrics = motion_protocol_metrics(pd.concat([table, small], ignore_index=True))
    metrics = metrics.set_index(["source", "range"])
    assert metrics.loc[("all", "all"), "mm_spearman"] == pytest.approx(1)
    row = metrics.loc[("all", "rms-0-4")]
    assert (row["n_clean"], row["n_moved"]) == (6, 6)
    assert row["mm_r2"] < 0 and row["mm_spearman"] < 0.9
    assert ("ixi", "rms-0-4") in metrics.index


def real_table(**columns) -> pd.DataFrame:
    """A labelled group table of two participants, as real_scan_table gives it."""
    base = {
        "bids_name": ["a1_T1w", "a2_T1w", "a3_T1w", "b1_T1w", "b2_T1w", "c1_T1w"],
        "participant_id": ["sub-a", "sub-a", "sub-a", "sub-b", "sub-b", "sub-c"],
        "score": pd.array([1, 2, 3, 1, 2, pd.NA], dtype="Int64"),
        "source": ["mrart"] * 5 + ["elderly"],
        "status": ["ok"] * 5 + ["failed"],
        "decision": ["pass", "review", "fail", "fail", "review", "fail"],
        "reasons": [np.nan, "review: cjv", "fail: motion", "review: rereg_mm", np.nan, np.nan],
        "not_assessed": [np.nan] * 6,
        "rereg_mm": [0.2, 0.3, 0.2, 3.0, 0.1, np.nan],
        "p_misregistered": [0.1, 0.2, 0.1, 0.95, 0.2, np.nan],
        "motion_mm": [1.0, 2.0, 4.0, 3.0, 2.5, np.nan],
        "snr": [20.0, 15.0, 10.0, 12.0, 9.0, np.nan],
    }
    return pd.DataFrame(base | columns)


def test_real_scan_summary_counts_registration_and_exclusions() -> None:
    summary = real_scan_summary(real_table()).set_index("source")
    assert list(summary.index) == ["elderly", "mrart", "all"]
    mrart = summary.loc["mrart"]
    assert (mrart["images"], mrart["processed"]) == (5, 5)
    assert mrart["registered"] == pytest.approx(4 / 5)
    assert mrart["flagged_misregistered"] == pytest.approx(1 / 5)
    assert mrart["excluded"] == pytest.approx(2 / 5)
    assert mrart["clean_excluded"] == pytest.approx(1 / 2)
    assert summary.loc["elderly", "processed"] == 0
    assert np.isnan(summary.loc["elderly", "registered"])


def test_real_scan_summary_judges_thick_slices_by_rereg_mm_alone() -> None:
    """rereg_mm holds on slices of up to 6.6 mm: such an image's registration counts, and the
    reason that names it as kept is no flag; on thicker slices nothing is judged."""
    kept = "slices of 6.0 mm: … up to 4.5 mm, rereg_mm on up to 6.6 mm"
    table = real_table(
        status=["ok"] * 6,
        not_assessed=[np.nan] * 4 + [kept, "slices of 8.0 mm: … up to 4.5 mm"],
        reasons=[np.nan, "review: cjv", "fail: motion", "review: rereg_mm 3 >= 2"]
        + [f"review: not assessed ({kept})", "review: not assessed (slices of 8.0 mm: …)"],
    )
    summary = real_scan_summary(table).set_index("source")
    assert summary.loc["mrart", "registered"] == pytest.approx(4 / 5)
    assert summary.loc["mrart", "flagged_misregistered"] == pytest.approx(1 / 5)
    assert summary.loc["mrart", "not_assessed"] == 1
    assert summary.loc["elderly", "not_assessed"] == 1
    assert np.isnan(summary.loc["elderly", "registered"])


def test_real_scan_agreement_is_oriented_and_orders_each_persons_scans() -> None:
    agreement = real_scan_agreement(real_table()).set_index(["source", "column"])
    motion = agreement.loc[("mrart", "motion_mm")]
    assert motion["pairs_ordered"] == "3/4"  # b's clean scan has more motion than its mild one
    assert motion["auc_severe"] == 1
    snr = agreement.loc[("mrart", "snr")]  # higher is better: negated, so agreement is positive
    assert snr["spearman"] == pytest.approx(0.5798, abs=1e-4) and snr["pairs_ordered"] == "4/4"
    assert ("elderly", "motion_mm") not in agreement.index  # no score there


def test_real_labels_read_mrart_scores_and_refuse_others(tmp_path: Path) -> None:
    labels = tmp_path / "scores.tsv"
    labels.write_text("bids_name\tscore\nsub-1_acq-standard_T1w\t1\nsub-2_T1w.nii.gz\tn/a\n")
    read = read_real_labels(labels)
    assert read["bids_name"].tolist() == ["sub-1_acq-standard_T1w", "sub-2_T1w"]
    assert read["score"].iloc[0] == 1 and read["score"].isna().iloc[1]
    assert set(read["source"]) == {"all"}
    labels.write_text("bids_name\tscore\nsub-1_T1w\t4\n")
    with pytest.raises(ValueError, match="scores must be 1, 2, 3 or n/a"):
        read_real_labels(labels)


def test_real_evaluation_runs_bidsqc_with_the_networks_it_is_given(monkeypatch, tmp_path):
    commands = []
    monkeypatch.setattr(
        "subprocess.run", lambda command, check: commands.append(command) or Namespace(returncode=1)
    )
    run_bidsqc(tmp_path / "bids", tmp_path / "out", 2, models_dir=tmp_path / "models")
    participant, group = commands
    assert participant[-5:] == [
        "participant",
        "--nprocs",
        "2",
        "--models-dir",
        str(tmp_path / "models"),
    ]
    assert group[-1] == "group"
    monkeypatch.setattr("subprocess.run", lambda command, check: Namespace(returncode=2))
    with pytest.raises(RuntimeError, match="participant exited with 2"):
        run_bidsqc(tmp_path / "bids", tmp_path / "out", 2)


@pytest.mark.slow
def test_evaluate_real_command_on_the_demo(demo_dir, tmp_path: Path) -> None:
    labels = tmp_path / "scores.tsv"
    labels.write_text(
        "bids_name\tscore\nsub-01_run-1_T1w\t1\nsub-01_run-2_T1w\t3\nsub-02_FLAIR\tn/a\n"
    )
    out = tmp_path / "real"
    args = ["real", "--bids", str(demo_dir), "--labels", str(labels), "--out", str(out)]
    assert main(args) == 0
    summary = pd.read_csv(out / "real_summary.tsv", sep="\t")
    assert summary.loc[0, "images"] == 3 and summary.loc[0, "processed"] == 3
    agreement = pd.read_csv(out / "real_agreement.tsv", sep="\t").set_index("column")
    assert agreement.loc["motion_mm", "pairs_ordered"] in ("0/1", "1/1")
    assert agreement.loc["motion_mm", "n"] == 2
    labels.write_text("bids_name\tscore\nsub-09_T1w\t1\n")
    assert main([*args[:-1], str(tmp_path / "again")]) == 2  # a labelled scan bidsqc never saw


@pytest.mark.slow
def test_evaluate_motion_command(demo_dir, tmp_path: Path, capsys) -> None:
    images = tmp_path / "images.txt"
    images.write_text(
        f"{demo_dir}/sub-01/anat/sub-01_run-1_T1w.nii.gz\n{demo_dir}/sub-02/anat/sub-02_T1w.nii.gz\n"
    )
    out = tmp_path / "eval"
    args = ["motion", "--images", str(images)]
    assert main([*args, "--out", str(out), "--repeats", "1", "--jobs", "2"]) == 0
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(predictions) == 10
    assert sorted(predictions["condition"].unique()) == ["2-4", "4-6", "6-8", "clean", "rms-0-4"]
    small = predictions[predictions["condition"] == "rms-0-4"]
    assert small["motion_rms_mm"].between(0, 4).all()
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert set(metrics["source"]) == {"all", "demo"}
    assert (metrics["range"] == "rms-0-4").sum() == 2
    assert "| all | 6-8 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2"):
        main(["motion", "--out", str(out)])


def test_predict_motion_samples_keeps_the_true_grade_beside_the_predicted(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    network = MotionNet(channels=(4, 8, 8)).eval()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.npy")
        np.save(paths[-1], rng.random((16, 20, 16), dtype=np.float32))
    table = pd.DataFrame(
        {"path": [str(p) for p in paths], "motion_grade": [0, 1, 2]}, index=[5, 7, 9]
    )
    predicted = predict_motion_samples(network, table, batch_size=2)
    assert list(predicted.index) == [5, 7, 9]
    assert predicted["motion_grade"].tolist() == [0, 1, 2]
    assert set(predicted["motion_grade_predicted"]) <= {0, 1, 2}
    probabilities = predicted[["p_motion_none", "p_motion_mild", "p_motion_severe"]]
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    assert predicted["motion_mm"].notna().all()


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
def test_evaluate_registration_command(demo_dir, tmp_path: Path, capsys) -> None:
    images = tmp_path / "images.txt"
    images.write_text(f"{demo_dir}/sub-02/anat/sub-02_T1w.nii.gz\n")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        f"{demo_dir}/sub-02/anat/sub-02_FLAIR.nii.gz\t{demo_dir}/sub-02/anat/sub-02_T1w.nii.gz\n"
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
    scores = {"network", "mask_dice", "mask_hd95_mm", "nmi", "rereg_mm", "rigid_step_mm"}
    assert scores == set(metrics["score"])
    assert predictions.loc[predictions["kind"] == "coregistered", "rereg_mm"].isna().all()
    assert template.loc["aligned", "rereg_mm"] < 1
    assert (predictions["rigid_step_mm"] >= 0).all()  # template and FLAIR/T1w pairs alike
    assert template.loc["8-20", "rereg_mm"] == pytest.approx(template.loc["8-20", "rms_mm"], abs=2)
    assert "| template | all | network |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2"):
        main(["registration", "--out", str(out)])


# --- artefact network ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ARTEFACT_NAMES)
@pytest.mark.parametrize("severity", [0.3, 0.6])
def test_artefact_at_severity_gives_exactly_that_severity(name: str, severity: float) -> None:
    draw = ArtefactAtSeverity(name, severity)
    # TorchIO computes the bias field, whose log-range is its strength, in float32; the motion
    # RMS is met by a fixed point to 1e-6 mm.
    tolerance = 1e-6 if name in ("bias", "motion") else 1e-9
    for seed in range(4):
        artefact = draw.sample(np.random.default_rng(seed))
        assert isinstance(artefact, ARTEFACTS[name])
        assert abs(artefact.severity - severity) < tolerance
        if isinstance(artefact, Ghosting):
            assert artefact.intensity <= 1
            assert artefact.num_ghosts in (2, 3)


def test_artefact_at_severity_varies_the_other_parameters() -> None:
    rng = np.random.default_rng(0)
    ghosts = [ArtefactAtSeverity("ghosting", 0.6).sample(rng) for _ in range(20)]
    assert {ghost.num_ghosts for ghost in ghosts} == {2, 3}
    assert {ghost.axis for ghost in ghosts} == {0, 1, 2}
    # Severity 1 allows 2 ghosts only: 3 would need an attenuation of 1.5.
    assert {ArtefactAtSeverity("ghosting", 1.0).sample(rng).num_ghosts for _ in range(5)} == {2}
    noises = [ArtefactAtSeverity("noise", 0.3).sample(rng) for _ in range(3)]
    assert len({noise.seed for noise in noises}) == 3


@pytest.mark.parametrize(
    ("name", "severity"),
    [("quality", 0.3), ("no_such_artefact", 0.3), ("noise", 0.0), ("noise", -0.1), ("blur", 1.01)],
)
def test_artefact_at_severity_refuses_bad_settings(name: str, severity: float) -> None:
    with pytest.raises(ValueError):
        ArtefactAtSeverity(name, severity)


def artefact_table() -> pd.DataFrame:
    """Predictions of the artefact protocol, made by hand.

    Every corrupted sample scores 0.9 for its artefact, every other probability is 0.1,
    except: clean ``c0`` has p_noise 0.55 and ``c2`` p_inhomogeneity exactly 0.5 (both
    flagged); the second mild blur sample is missed (0.4); the second mild spike sample scores
    0.65, below the p_spike 0.7 of the first mild ghosting sample; and the first moderate
    ghosting sample has p_spike 0.95, which must not count against the mild spikes.
    """
    columns = list(ARTEFACT_PROBABILITY_COLUMNS.values())
    rows = []
    for index in range(3):
        rows.append({"condition": "clean", "artefact": "clean", "level": "clean", "copy": index})
    for name in ARTEFACT_NAMES:
        for level in ARTEFACT_LEVELS:
            for copy in range(2):
                rows.append(
                    {"condition": f"{name}-{level}", "artefact": name, "level": level, "copy": copy}
                )
    table = pd.DataFrame(rows)
    for column in columns:
        table[column] = 0.1
    for name, column in ARTEFACT_PROBABILITY_COLUMNS.items():
        table.loc[table["artefact"] == name, column] = 0.9

    def at(condition: str, copy: int) -> pd.Series:
        return (table["condition"] == condition) & (table["copy"] == copy)

    table.loc[at("clean", 0), "p_noise"] = 0.55
    table.loc[at("clean", 2), "p_inhomogeneity"] = 0.5
    table.loc[at("blur-mild", 1), "p_blur"] = 0.4
    table.loc[at("spike-mild", 1), "p_spike"] = 0.65
    table.loc[at("ghosting-mild", 0), "p_spike"] = 0.7
    table.loc[at("ghosting-moderate", 0), "p_spike"] = 0.95
    severity = table["level"].map(ARTEFACT_LEVELS).fillna(0.0)
    table["quality_true"] = 10 - 6 * severity
    table["quality_score"] = table["quality_true"] - 0.5
    return table


#: The hand-computed values below assume a review threshold of 0.5 for every artefact.
AT_ONE_HALF = dict.fromkeys(ARTEFACT_PROBABILITY_COLUMNS.values(), 0.5)


def test_artefact_metrics_table() -> None:
    metrics = artefact_metrics_table(artefact_table(), AT_ONE_HALF).set_index(["artefact", "level"])
    assert list(metrics.index) == [
        (name, level) for name in ARTEFACT_NAMES for level in ("mild", "moderate")
    ]
    assert (metrics["n"] == 2).all()
    # Every artefact's probability ranks its samples above the clean images.
    assert (metrics["auc_vs_clean"] == 1.0).all()
    # Clean images and the 5 other artefacts at the same level: 3 + 10 negatives.
    assert metrics.loc[("spike", "mild"), "auc_vs_clean_and_others"] == pytest.approx(25 / 26)
    assert metrics.loc[("spike", "mild"), "sensitivity"] == 1.0
    assert metrics.loc[("spike", "mild"), "specificity_clean"] == 1.0
    assert metrics.loc[("spike", "mild"), "specificity_others"] == pytest.approx(12 / 13)
    assert metrics.loc[("spike", "moderate"), "auc_vs_clean_and_others"] == pytest.approx(24 / 26)
    assert metrics.loc[("spike", "moderate"), "specificity_others"] == pytest.approx(12 / 13)
    assert metrics.loc[("blur", "mild"), "auc_vs_clean_and_others"] == 1.0
    assert metrics.loc[("blur", "mild"), "sensitivity"] == 0.5
    assert metrics.loc[("blur", "moderate"), "sensitivity"] == 1.0
    for level in ARTEFACT_LEVELS:
        noise, bias = metrics.loc[("noise", level)], metrics.loc[("bias", level)]
        assert noise["specificity_clean"] == pytest.approx(2 / 3)  # c0 at 0.55
        assert noise["specificity_others"] == pytest.approx(12 / 13)
        assert bias["specificity_clean"] == pytest.approx(2 / 3)  # c2 at exactly 0.5
        assert metrics.loc[("ghosting", level), "specificity_others"] == 1.0
        assert metrics.loc[("ghosting", level), "auc_vs_clean_and_others"] == 1.0
    assert "| spike | mild | 2 |" in markdown_table(metrics.reset_index())


def test_artefact_metrics_table_separates_perfectly() -> None:
    table = artefact_table()
    columns = list(ARTEFACT_PROBABILITY_COLUMNS.values())
    table[columns] = 0.1
    for name, column in ARTEFACT_PROBABILITY_COLUMNS.items():
        table.loc[table["artefact"] == name, column] = 0.9
    metrics = artefact_metrics_table(table, AT_ONE_HALF)
    for score in ("auc_vs_clean", "auc_vs_clean_and_others", "sensitivity"):
        assert (metrics[score] == 1.0).all()
    assert (metrics[["specificity_clean", "specificity_others"]] == 1.0).all().all()


def test_artefact_summary() -> None:
    table = artefact_table()
    summary = artefact_summary(table, AT_ONE_HALF)
    truth = table["quality_true"].to_numpy()
    expected_r2 = 1 - 0.25 * len(truth) / np.sum((truth - truth.mean()) ** 2)
    assert summary["quality_r2"] == pytest.approx(expected_r2)
    assert summary["quality_spearman"] == pytest.approx(1.0)
    assert summary["clean_images"] == 3
    assert summary["clean_flagged_any"] == pytest.approx(2 / 3)  # c0 and c2, at >= 0.5
    # Flags on corrupted samples do not count; a clean row below 0.5 everywhere is not flagged.
    table.loc[table["condition"] == "clean", ["p_noise", "p_inhomogeneity"]] = 0.49
    assert artefact_summary(table, AT_ONE_HALF)["clean_flagged_any"] == 0.0
    # Each artefact at its own threshold: the clean row at 0.55 noise is below 0.6.
    assert artefact_summary(table.assign(p_noise=0.55), AT_ONE_HALF | {"p_noise": 0.6})[
        "clean_flagged_any"
    ] == pytest.approx(0.0)
    json.dumps(artefact_summary(table, AT_ONE_HALF))


def test_evaluate_artefact_needs_images(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["artefact", "--out", str(tmp_path / "eval")])
    assert exit_info.value.code == 2
    assert "give --images" in capsys.readouterr().err
    (tmp_path / "a_T1w.nii.gz").touch()
    opts = build_parser().parse_args(
        ["artefact", "--images", str(tmp_path), "--out", str(tmp_path / "eval")]
    )
    assert opts.network == "artefact"
    assert opts.images == [tmp_path / "a_T1w.nii.gz"]
    assert opts.evaluate is evaluate_artefact
    assert (opts.repeats, opts.seed) == (2, 0)
    assert not (tmp_path / "eval").exists()


def saved_network(network, path: Path, network_arguments: dict) -> Path:
    """``network`` saved at ``path`` with a model card whose one validation image is 'a'."""
    from bidsqc.training.cards import save_model

    card = {
        "training_files": [],
        "hyperparameters": {"network": network_arguments},
        "validation_metrics": {},
        "seed": 0,
        "split": {"validation_images": ["a"]},
    }
    save_model(network, path, card)
    return path


def test_calibrate_needs_the_weights_it_writes_into(tmp_path: Path, capsys) -> None:
    for network in ("motion", "artefact"):
        with pytest.raises(SystemExit) as exit_info:
            main([network, "--calibrate", str(tmp_path), "--out", str(tmp_path / "eval")])
        assert exit_info.value.code == 2
        assert "--calibrate writes into the model card of --weights" in capsys.readouterr().err


def test_evaluate_motion_calibrates_into_the_card(tmp_path: Path) -> None:
    torch.manual_seed(0)
    arguments = {"channels": [4, 8, 8]}
    weights = saved_network(MotionNet(**arguments), tmp_path / "motion.pt", arguments)
    samples = tmp_path / "samples"
    samples.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for index, (base, rms) in enumerate([("a", 0.0), ("a", 0.0), ("a", 6.0), ("b", 0.0)]):
        np.save(samples / f"{index}.npy", rng.random((16, 20, 16), dtype=np.float32))
        rows.append({"filename": f"{index}.npy", "base_image": base, "motion_rms_mm": rms})
    pd.DataFrame(rows).to_csv(samples / "labels.tsv", sep="\t", index=False)
    out = tmp_path / "eval"
    argv = ["motion", "--calibrate", str(samples), "--weights", str(weights), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    calibration = pd.read_csv(out / "calibration.tsv", sep="\t")
    assert calibration["base_image"].tolist() == ["a"] * 3  # the card's validation image only
    unmoved = 1 - calibration.loc[calibration["motion_rms_mm"] == 0, "p_motion_none"]
    card = json.loads(weights.with_suffix(".json").read_text())
    # A budget of 2 % of 2 unmoved samples allows none: just above the highest.
    assert card["calibration"]["thresholds"]["p_motion"] == pytest.approx(unmoved.max(), abs=2e-4)
    assert card["calibration"]["thresholds"]["p_motion"] > unmoved.max()
    assert card["calibration"]["samples"] == 3


def test_evaluate_artefact_refuses_uncalibrated_weights(tmp_path: Path, caplog) -> None:
    arguments = {"channels": [4, 8, 8, 16, 16], "hidden_features": [16]}
    weights = saved_network(ArtefactNet(**arguments), tmp_path / "artefact.pt", arguments)
    (tmp_path / "a_T1w.nii.gz").touch()
    argv = ["artefact", "--images", str(tmp_path), "--weights", str(weights)]
    assert main([*argv, "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 2
    assert "has no calibrated thresholds: give --calibrate" in caplog.text
    assert not (tmp_path / "eval" / "samples").exists()


class FakeArtefactWriter:
    """Stands in for TemplateSpaceSampleWriter: saves the corrupted volume as it is."""

    def __init__(self, resolution: int, register_copies: bool = False) -> None:
        assert register_copies, "the protocol registers each corrupted copy itself"

    def __call__(self, image, stem: Path, original) -> str:
        path = stem.with_name(f"{stem.name}.npy")
        np.save(path, np.asarray(image.dataobj, dtype=np.float16))
        return path.name


def test_artefact_protocol_samples_every_artefact_at_every_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "bidsqc.training.evaluation.artefact.TemplateSpaceSampleWriter", FakeArtefactWriter
    )
    grid = np.indices((24, 24, 24)) - 11.5
    ball = (np.sqrt((grid**2).sum(axis=0)) < 9) * 100.0 + 1.0
    images = []
    for index in range(2):
        path = tmp_path / f"sub-0{index + 1}_T1w.nii.gz"
        nb.save(nb.Nifti1Image(ball.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), path)
        images.append(path)
    table = generate_artefact_protocol_samples(images, tmp_path / "samples", repeats=1, seed=0)
    assert len(table) == 2 * (1 + len(ARTEFACT_NAMES) * len(ARTEFACT_LEVELS))
    clean = table[table["condition"] == "clean"]
    assert (clean["artefact"] == "clean").all() and (clean["level"] == "clean").all()
    severities = [f"severity_{name}" for name in ARTEFACTS]
    assert (clean[severities] == 0).all().all()
    for name in ARTEFACT_NAMES:
        for level, severity in ARTEFACT_LEVELS.items():
            rows = table[table["condition"] == f"{name}-{level}"]
            assert len(rows) == 2
            assert (rows["artefact"] == name).all() and (rows["level"] == level).all()
            # That artefact alone, at that severity.
            np.testing.assert_allclose(rows[f"severity_{name}"], severity, atol=1e-6)
            others = [column for column in severities if column != f"severity_{name}"]
            assert (rows[others] == 0).all().all()
            assert all(Path(path).parent.name == f"{name}-{level}" for path in rows["path"])
    assert all(Path(path).is_file() for path in table["path"])
    # Its conditions are those the metrics read.
    scored = table.assign(**dict.fromkeys(ARTEFACT_PROBABILITY_COLUMNS.values(), 0.0))
    metrics = artefact_metrics_table(scored, AT_ONE_HALF)
    assert len(metrics) == len(ARTEFACT_NAMES) * len(ARTEFACT_LEVELS)
    assert (metrics["n"] == 2).all()


def test_predict_artefact_samples(tmp_path: Path) -> None:
    # A field of view of a 48 mm cube in the brain: few tiles hold brain, so it runs fast.
    field_of_view = np.zeros(head_box_brain_mask(1).shape, bool)
    field_of_view[72:120, 88:136, 72:120] = True
    brain = head_box_brain_mask(1) & field_of_view
    paths = []
    for index in range(2):
        path = tmp_path / f"sample-{index}.npy"
        np.save(path, np.where(brain, 0.5 + 0.1 * index, 0).astype(np.float16))
        paths.append(str(path))
    table = pd.DataFrame({"path": paths, "condition": ["clean", "noise-moderate"]})
    for name in ARTEFACTS:
        table[f"severity_{name}"] = 0.0
    table.loc[1, "severity_noise"] = 0.6
    table.loc[1, "severity_blur"] = 0.25
    torch.manual_seed(0)
    network = ArtefactNet(channels=(4, 8, 8, 16, 16), hidden_features=(16,), dropout=0.0).eval()
    predicted = predict_artefact_samples(network, table)
    assert list(predicted.index) == list(table.index)
    assert predicted["quality_true"].tolist() == pytest.approx([10.0, 10 - 6 * 0.85])
    assert set(ARTEFACT_COLUMNS) <= set(predicted.columns)
    for column in ARTEFACT_PROBABILITY_COLUMNS.values():
        assert predicted[column].between(0, 1).all()
    assert predicted["quality_score"].between(0, 10).all()
    assert predicted["path"].tolist() == paths  # the table's columns are kept


def test_calibrated_thresholds_keep_the_false_positive_budget() -> None:
    from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS
    from bidsqc.training.evaluation.calibration import calibrated_thresholds

    rng = np.random.default_rng(0)
    rows, count = [], len(ARTEFACT_PROBABILITY_COLUMNS)
    for index in range(200):
        present = {name: index % count == k for k, name in enumerate(ARTEFACT_PROBABILITY_COLUMNS)}
        row = {f"severity_{name}": 0.5 * present[name] for name in ARTEFACT_PROBABILITY_COLUMNS}
        for name, column in ARTEFACT_PROBABILITY_COLUMNS.items():
            row[column] = rng.uniform(0.3, 0.9) if present[name] else rng.uniform(0.0, 0.6)
        rows.append(row)
    table = pd.DataFrame(rows)
    thresholds = calibrated_thresholds(table, false_positive_budget=0.05)
    for name, column in ARTEFACT_PROBABILITY_COLUMNS.items():
        absent = table[f"severity_{name}"] == 0
        flagged = table.loc[absent, column] >= thresholds[column]
        assert flagged.mean() <= 0.05
        # The next lower candidate would break the budget: the threshold is the lowest one.
        lower = table.loc[absent, column][~flagged].max()
        assert (table.loc[absent, column] >= lower).mean() > 0.05
    with pytest.raises(ValueError, match="every sample"):
        calibrated_thresholds(table.assign(severity_noise=0.5))


def test_calibrated_motion_threshold_calls_motion_in_few_unmoved_samples() -> None:
    from bidsqc.training.evaluation.calibration import calibrated_motion_threshold

    p_none = np.linspace(0.50, 0.99, 50)  # the unmoved samples
    table = pd.DataFrame(
        {
            "motion_rms_mm": np.r_[np.zeros(50), np.full(30, 8.0)],
            "p_motion_none": np.r_[p_none, np.full(30, 0.05)],
        }
    )
    # 2 % of 50 is 1 sample: the threshold lies just above the second highest 1 - p_none.
    threshold = calibrated_motion_threshold(table)
    assert threshold == pytest.approx(1 - p_none[1] + 1e-4, abs=1e-4)
    assert threshold > 1 - p_none[1]
    assert ((1 - p_none) >= threshold).sum() == 1
    assert calibrated_motion_threshold(table, false_positive_budget=0) > 1 - p_none[0]
    with pytest.raises(ValueError, match="every sample is moved"):
        calibrated_motion_threshold(table[table["motion_rms_mm"] > 0])
