"""Fine-tuning on a site's labels: the label formats, the folds, the methods and the command."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
import torch

from bidsqc.data import MODELS_DIR, read_model_card
from bidsqc.inference.models import load_network
from bidsqc.networks import MotionNet, ProbedMotionNet
from bidsqc.training.cards import file_sha256
from bidsqc.training.cli.finetune import main
from bidsqc.training.finetune import (
    FineTuneSettings,
    find_preprocessed,
    fine_tune,
    label_images,
    participant_folds,
)
from bidsqc.training.labels import LABEL_FORMATS, Label, LabelError, read_labels

NETWORK_ARGS = {"channels": [4, 8], "hidden_features": [16], "dropout": 0.0, "n_bins": 50}


def export_tsv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A ratings export as the reports write it: filename, rating, artefacts, and the rest."""
    table = pd.DataFrame(rows, columns=["filename", "rating", "artefacts"])
    table = table.assign(comment="", rater="me", time="2026-12-02T10:00:00Z", motion_mm="1.2")
    table.to_csv(path, sep="\t", index=False)
    return path


def test_the_export_gives_ratings_and_motion_grades(tmp_path):
    path = export_tsv(
        tmp_path / "bidsqc_ratings.tsv",
        [
            ("sub-01/anat/sub-01_T1w.nii.gz", "usable", ""),
            ("sub-02/anat/sub-02_run-1_T1w.nii.gz", "questionable", "motion,noise"),
            ("sub-03/anat/sub-03_FLAIR.nii.gz", "unusable", "ghosting"),
            ("sub-04/anat/sub-04_T1w.nii.gz", "usable", "motion"),
            ("sub-05/anat/sub-05_T1w.nii.gz", "", "blur"),  # tags only: skipped
        ],
    )
    found, labels = read_labels([path])
    assert found == LABEL_FORMATS[0]
    assert [(label.stem, label.rating, label.motion) for label in labels] == [
        ("sub-01_T1w", 0, 0),
        ("sub-02_run-1_T1w", 1, 1),
        ("sub-03_FLAIR", 2, 0),
        ("sub-04_T1w", 0, 1),
    ]
    assert labels[1].participant == "sub-02"
    assert labels[1].source.endswith("bidsqc_ratings.tsv:3")


def test_mrart_scores_and_mriqc_ratings(tmp_path):
    scores = tmp_path / "scores.tsv"
    scores.write_text(
        "bids_name\tscore\nsub-000103_acq-standard_T1w\t1\nsub-000103_acq-headmotion1_T1w\t3\n"
    )
    found, labels = read_labels([scores])
    assert found == LABEL_FORMATS[2]
    assert [(label.stem, label.target("motion")) for label in labels] == [
        ("sub-000103_acq-standard_T1w", 0),
        ("sub-000103_acq-headmotion1_T1w", 2),
    ]
    widget = tmp_path / "a.json"
    widget.write_text(
        json.dumps(
            {
                "subject": "01",
                "run": "2",
                "modality": "T1w",
                "rating": 2,
                "artifacts": ["head-motion"],
            }
        )
    )
    other = tmp_path / "sub-02_T1w.json"
    other.write_text(json.dumps({"rating": 4.0, "artifacts": []}))
    found, labels = read_labels([widget, other])
    assert found == LABEL_FORMATS[1]
    assert [(label.stem, label.rating, label.motion) for label in labels] == [
        ("sub-01_run-2_T1w", 1, 1),
        ("sub-02_T1w", 0, 0),
    ]


def test_unreadable_labels_are_errors_that_say_why(tmp_path):
    bad = export_tsv(tmp_path / "bad.tsv", [("sub-01/anat/sub-01_T1w.nii.gz", "great", "")])
    with pytest.raises(LabelError, match="bad.tsv:2: rating 'great'"):
        read_labels([bad])
    twice = export_tsv(
        tmp_path / "twice.tsv",
        [("sub-01/anat/sub-01_T1w.nii.gz", "usable", ""), ("sub-01_T1w.nii.gz", "unusable", "")],
    )
    with pytest.raises(LabelError, match="more than one label for sub-01_T1w"):
        read_labels([twice])
    other = tmp_path / "other.tsv"
    other.write_text("name\tvalue\nx\t1\n")
    with pytest.raises(LabelError, match="not a labels file"):
        read_labels([other])


def test_folds_keep_each_participant_in_one_fold():
    participants = ["sub-01"] * 3 + ["sub-02"] * 2 + ["sub-03"] * 4 + ["sub-04"]
    folds = participant_folds(participants, n_folds=3, seed=0)
    assert len(folds) == 3
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(participants)))
    for fold in folds:
        inside = {participants[i] for i in fold}
        outside = {participants[i] for other in folds if other is not fold for i in other}
        assert not inside & outside
    assert len(participant_folds(participants, n_folds=10, seed=0)) == 4
    with pytest.raises(LabelError, match="two participants"):
        participant_folds(["sub-01"] * 3, n_folds=2, seed=0)


def separable_embeddings(n: int = 30) -> tuple[torch.Tensor, np.ndarray]:
    """Non-negative embeddings (N, 2, 8), as the encoder's pooled ReLUs give, whose class is
    which of their first two features is high."""
    rng = np.random.default_rng(0)
    targets = np.arange(n) % 3
    centres = np.array([[0.5, 0.5], [3.0, 0.5], [0.5, 3.0]])[targets]
    features = rng.normal(0, 0.3, (n, 2, 8))
    features[:, :, :2] += centres[:, None]
    return torch.tensor(features, dtype=torch.float32).clamp_min(0), targets


@pytest.mark.parametrize("method", ["head", "embedding"])
def test_fine_tuning_learns_the_labels_and_leaves_the_encoder_alone(method):
    torch.manual_seed(0)
    base = MotionNet(**NETWORK_ARGS)
    embeddings, targets = separable_embeddings()
    model = fine_tune(base, NETWORK_ARGS, embeddings, targets, method, FineTuneSettings(epochs=400))
    assert isinstance(model, ProbedMotionNet if method == "embedding" else MotionNet)
    base_state, state = base.state_dict(), model.state_dict()
    for key in (k for k in base_state if k.startswith(("encoder.", "mm_head."))):
        assert torch.equal(state[key], base_state[key]), key
    with torch.no_grad():
        mean = embeddings.mean(dim=1)
        logits = (
            model.probe_logits(mean)
            if method == "embedding"
            else model.grade_head(model.trunk(mean))
        )
    assert (logits.argmax(dim=1).numpy() == targets).mean() > 0.9


def preproc_dir(root: Path, stems: list[str], shape=(32, 32, 32)) -> Path:
    """A participant run's output with a small preprocessed image for each stem; image i
    brightens with i % 3, so that the classes differ."""
    rng = np.random.default_rng(0)
    for i, stem in enumerate(stems):
        subject = stem.split("_")[0]
        prefix, suffix = stem.rsplit("_", 1)
        path = (
            root
            / subject
            / "anat"
            / f"{prefix}_space-MNI152NLin2009cSym_res-2_desc-preproc_{suffix}.nii.gz"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.uniform(0.5, 1.0, shape).astype(np.float32) * (1 + (i % 3))
        data[: 4 * (1 + i % 3)] = 0
        nb.save(nb.Nifti1Image(data, np.eye(4)), path)
    return root


def test_labels_that_match_no_image_are_named(tmp_path):
    out = preproc_dir(tmp_path / "out", ["sub-01_T1w"])
    assert list(find_preprocessed(out)) == ["sub-01_T1w"]
    labels = [Label("sub-01_T1w", 0, 0, "x:2"), Label("sub-09_T1w", 1, 1, "x:3")]
    with pytest.raises(
        LabelError, match=r"1 label\(s\) match no preprocessed image.*sub-09_T1w \(x:3\)"
    ):
        label_images(labels, out, MotionNet(**NETWORK_ARGS), progress=False)


def finetune_argv(labels: Path, out: Path, task: str, models: Path, base: Path, *more: str):
    """The command line of bidsqc-finetune, quiet, with ``more`` options."""
    return [
        "--labels",
        str(labels),
        "--qc-dir",
        str(out),
        "--task",
        task,
        "--out",
        str(models),
        "--base",
        str(base),
        "--no-progress",
        *more,
    ]


@pytest.fixture
def small_base(tmp_path) -> Path:
    """A small MotionNet with a model card, as bidsqc-train writes them."""
    torch.manual_seed(0)
    weights = tmp_path / "base" / "motion.pt"
    weights.parent.mkdir()
    torch.save(MotionNet(**NETWORK_ARGS).state_dict(), weights)
    card = {
        "architecture": "MotionNet",
        "hyperparameters": {"network": NETWORK_ARGS},
        "weights": {"path": "motion.pt", "sha256": file_sha256(weights)},
    }
    weights.with_suffix(".json").write_text(json.dumps(card))
    return weights


@pytest.mark.parametrize("method", ["head", "embedding"])
def test_finetune_command_cross_validates_and_writes_a_model_with_its_card(
    tmp_path, small_base, method, caplog
):
    stems = [f"sub-{s:02d}_run-{r}_T1w" for s in range(1, 5) for r in range(1, 4)]
    out = preproc_dir(tmp_path / "out", stems)
    ratings = ("usable", "questionable", "unusable")
    labels = export_tsv(
        tmp_path / "ratings.tsv",
        [
            (f"{stem.split('_')[0]}/anat/{stem}.nii.gz", ratings[i % 3], "motion" if i % 3 else "")
            for i, stem in enumerate(stems)
        ],
    )
    models = tmp_path / "models"
    argv = finetune_argv(
        labels,
        out,
        "motion",
        models,
        small_base,
        "--method",
        method,
        "--folds",
        "2",
        "--epochs",
        "50",
        "--scratch-epochs",
        "1",
    )
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    assert "bidsqc ratings TSV" in caplog.text
    assert "4 none, 4 mild, 4 severe" in caplog.text
    card = read_model_card(models / "motion.pt")
    assert card["method"] == method
    assert card["base_weights"]["sha256"] == file_sha256(small_base)
    assert card["labels"]["files"][0]["sha256"] == file_sha256(labels)
    assert card["labels"]["counts"] == {"none": 4, "mild": 4, "severe": 4}
    folds = card["cross_validation"]["folds"]
    assert len(folds) == 2
    assert sorted(p for fold in folds for p in fold["participants"]) == [
        f"sub-0{i}" for i in range(1, 5)
    ]
    assert set(card["cross_validation"]["pooled"]) == {"fine-tuned", "pretrained", "from scratch"}
    cv = pd.read_csv(models / "motion_cv.tsv", sep="\t")
    assert cv["fold"].tolist() == ["1", "2", "pooled", "mean"]
    network = load_network(models / "motion.pt")
    assert type(network).__name__ == card["architecture"]


def test_finetune_command_refuses_labels_of_images_not_in_the_qc_dir(tmp_path, small_base, caplog):
    out = preproc_dir(tmp_path / "out", ["sub-01_T1w"])
    labels = export_tsv(tmp_path / "r.tsv", [("sub-07/anat/sub-07_T1w.nii.gz", "usable", "")])
    argv = finetune_argv(
        labels,
        out,
        "quality",
        tmp_path / "m",
        small_base,
    )
    assert main(argv) == 2
    assert "sub-07_T1w" in caplog.text
    assert not (tmp_path / "m" / "quality.pt").exists()


def test_the_bundled_network_is_the_default_base():
    from bidsqc.training.cli.finetune import build_parser

    opts = build_parser().parse_args(
        ["--labels", "x", "--qc-dir", "o", "--task", "motion", "--out", "m"]
    )
    assert opts.base == MODELS_DIR / "motion.pt"
    assert opts.method == "head"


def test_one_participant_fine_tunes_without_cross_validation(tmp_path, small_base, caplog):
    stems = [f"sub-01_run-{r}_T1w" for r in range(1, 4)]
    out = preproc_dir(tmp_path / "out", stems)
    ratings = ("usable", "questionable", "unusable")
    labels = export_tsv(
        tmp_path / "r.tsv",
        [(f"sub-01/anat/{stem}.nii.gz", ratings[i], "") for i, stem in enumerate(stems)],
    )
    models = tmp_path / "m"
    argv = finetune_argv(labels, out, "quality", models, small_base, "--epochs", "5")
    assert main(argv) == 0
    assert "no cross-validation" in caplog.text
    card = read_model_card(models / "quality.pt")
    assert card["cross_validation"] is None
    assert card["labels"]["counts"] == {"usable": 1, "questionable": 1, "unusable": 1}
    assert not (models / "quality_cv.tsv").exists()


def test_labels_of_images_that_failed_are_left_out(tmp_path, small_base, caplog):
    out = preproc_dir(tmp_path / "out", ["sub-01_T1w", "sub-02_T1w"])
    table = out / "sub-03" / "sub-03_qc.tsv"
    table.parent.mkdir()
    table.write_text("filename\tstatus\nsub-03/anat/sub-03_T1w.nii.gz\tfailed\n")
    labels = export_tsv(
        tmp_path / "r.tsv",
        [
            (f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz", "unusable" if i == 3 else "usable", "")
            for i in (1, 2, 3)
        ],
    )
    argv = finetune_argv(
        labels,
        out,
        "quality",
        tmp_path / "m",
        small_base,
        "--epochs",
        "5",
        "--scratch-epochs",
        "0",
    )
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    assert (
        "Left out 1 label(s) of images that failed in the participant run: sub-03_T1w"
        in caplog.text
    )
    assert read_model_card(tmp_path / "m" / "quality.pt")["labels"]["images"] == 2


def test_an_export_without_a_rating_is_an_error_that_says_so(tmp_path, small_base, caplog):
    out = preproc_dir(tmp_path / "out", ["sub-01_T1w"])
    labels = export_tsv(tmp_path / "r.tsv", [("sub-01/anat/sub-01_T1w.nii.gz", "", "blur")])
    assert main(finetune_argv(labels, out, "quality", tmp_path / "m", small_base)) == 2
    assert "no label to train on" in caplog.text
