"""Tests for the training engine: data, split, loss, a tiny training run, saved weights, metrics."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from bidsqc import __version__
from bidsqc.geometry import motion_grade
from bidsqc.inference.inputs import normalise_intensity
from bidsqc.inference.models import load_model
from bidsqc.networks import RMS_BINS, GradeRmsOutput, MotionNet
from bidsqc.training.cards import save_model
from bidsqc.training.datasets import (
    MotionSampleDataset,
    augment_volume,
    random_bias_field,
    random_crop,
)
from bidsqc.training.engine import History, evaluate, fit, seed_everything
from bidsqc.training.losses import GradeRmsLoss, grade_class_weights
from bidsqc.training.metrics import (
    balanced_accuracy,
    motion_metrics,
    r2_score,
    registration_metrics,
    roc_auc,
    sensitivity,
    spearman,
    specificity,
)
from bidsqc.training.splits import subject_level_split, subject_of

#: A small network for 32³ volumes, cheap enough for a training run in a test.
SMALL = {"channels": (4, 8, 8, 16, 16), "hidden_features": (32, 16), "dropout": 0.0}


def stripes(rms_mm: float, size: int = 32) -> np.ndarray:
    """A cube on a zero background, striped with an amplitude that grows with ``rms_mm``."""
    volume = np.zeros((size,) * 3, dtype=np.float32)
    amplitude = 0.8 * rms_mm / RMS_BINS.max_mm
    pattern = 1 + amplitude * (-1.0) ** np.arange(size // 2)
    volume[size // 4 : -size // 4, size // 4 : -size // 4, size // 4 : -size // 4] = pattern
    return 300 * volume


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Train on one CPU thread: faster than two on a busy machine, and kinder to it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


HEADER = "filename\tbase_image\tmotion_rms_mm\tmotion_grade"


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """16 samples from 8 sources, in the ``labels.tsv`` format."""
    rows = ["filename\tbase_image\tmotion_rms_mm\tmotion_grade\tindex"]
    for index, rms in enumerate(np.linspace(0, 20, 16)):
        name = f"sample-{index:02d}.npy"
        np.save(tmp_path / name, normalise_intensity(stripes(rms)).astype(np.float16))
        rows.append(f"{name}\tsub-{index % 8}_T1w.nii.gz\t{rms}\t{motion_grade(rms)}\t{index}")
    (tmp_path / "labels.tsv").write_text("\n".join(rows) + "\n")
    return tmp_path


# --- data -------------------------------------------------------------------------------------


def test_normalise_intensity() -> None:
    volume = np.concatenate([np.zeros(50), -np.ones(10), np.arange(1.0, 101.0)])
    scaled = normalise_intensity(volume)
    assert scaled.dtype == np.float32 and scaled.min() == 0
    assert np.percentile(scaled[scaled > 0], 99) == pytest.approx(1)
    np.testing.assert_allclose(normalise_intensity(scaled), scaled, rtol=1e-6)
    with pytest.raises(ValueError, match="positive voxel"):
        normalise_intensity(-np.ones(5))


def test_augment_volume_keeps_shape_and_sign() -> None:
    volume = torch.rand(1, 8, 6, 4)
    augmented = augment_volume(volume)
    assert augmented.shape == volume.shape and augmented.min() >= 0


def test_random_bias_field_is_smooth_and_bounded() -> None:
    torch.manual_seed(0)
    field = random_bias_field((24, 28, 24), max_log_gain=0.3)
    assert field.shape == (24, 28, 24)
    assert field.min() >= math.exp(-0.3) - 1e-6 and field.max() <= math.exp(0.3) + 1e-6
    assert field.max() / field.min() > 1.1  # a field, not a constant
    for axis in range(3):  # neighbours differ by a few percent at most
        step = field.diff(dim=axis).abs() / field.narrow(axis, 1, field.shape[axis] - 1)
        assert step.max() < 0.1


def test_dataset_multiplies_by_a_bias_field_only_when_asked(
    sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bidsqc.training.datasets.augment_volume", lambda volume: volume)
    plain = MotionSampleDataset(sample_dir)[3][0]
    inside = plain > 0
    for bias_field, shaded in ((False, False), (True, True)):
        volume = MotionSampleDataset(sample_dir, augment=True, bias_field=bias_field)[3][0]
        gain = volume[inside] / plain[inside]
        assert bool(gain.std() > 0.01) is shaded
        assert gain.min() >= math.exp(-0.3) - 1e-5 and gain.max() <= math.exp(0.3) + 1e-5


def test_dataset_items(sample_dir: Path) -> None:
    dataset = MotionSampleDataset(sample_dir, augment=True)
    volume, target = dataset[3]
    assert len(dataset) == 16 and volume.shape == (1, 32, 32, 32) and volume.dtype == torch.float32
    assert target["grade"].dtype == torch.int64 and int(target["grade"]) == dataset.grades[3]
    assert float(target["rms_mm"]) == pytest.approx(4.0)
    assert dataset.sources[3] == "sub-3_T1w.nii.gz"


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (HEADER.rsplit("\t", 1)[0], "a.npy\ts\t1.0", "lacks the column"),
        (HEADER, "a.npy\ts\t30.0\t2", r"row\(s\) \[1\]"),
        (HEADER, "a.npy\ts\t1.0\t3", "motion_grade"),
    ],
)
def test_dataset_rejects_bad_tables(tmp_path: Path, header: str, row: str, message: str) -> None:
    (tmp_path / "labels.tsv").write_text(f"{header}\n{row}\n")
    with pytest.raises(ValueError, match=message):
        MotionSampleDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no labels.tsv"):
        MotionSampleDataset(tmp_path / "missing")


@pytest.mark.parametrize("seed", range(5))
def test_subject_level_split_never_splits_a_source(seed: int) -> None:
    sources = [f"sub-{i}" for i in np.random.default_rng(seed).integers(0, 10, 60)]
    train, val = subject_level_split(sources, 0.3, seed)
    assert sorted([*train, *val]) == list(range(60))
    assert not {sources[i] for i in train} & {sources[i] for i in val}
    assert len({sources[i] for i in val}) == round(0.3 * len(set(sources)))


def test_subject_level_split_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        subject_level_split(["a", "b"], 1.0, 0)
    with pytest.raises(ValueError, match="2 distinct subjects"):
        subject_level_split(["a", "a"], 0.5, 0)


def test_random_crop_stays_inside_and_moves() -> None:
    volume = torch.arange(10 * 12 * 8, dtype=torch.float32).reshape(1, 10, 12, 8)
    torch.manual_seed(0)
    crops = [random_crop(volume, (4, 12, 3)) for _ in range(50)]
    assert all(crop.shape == (1, 4, 12, 3) for crop in crops)
    corners = {float(crop[0, 0, 0, 0]) for crop in crops}
    assert len(corners) > 10  # different places
    assert all(value in set(volume.flatten().tolist()) for value in corners)
    assert torch.equal(random_crop(volume, (10, 12, 8)), volume)
    with pytest.raises(ValueError, match="does not fit"):
        random_crop(volume, (11, 12, 8))


def test_subject_level_split_keeps_a_participant_together() -> None:
    sources = [
        "mslub/patient01/study1_T1W.nii.gz",
        "mslub/patient01/study2_FLAIR.nii.gz",
        "mslub/patient03/study1_T1W.nii.gz",
        "ds/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
        "ds/sub-01/ses-2/anat/sub-01_ses-2_FLAIR.nii.gz",
        "ixi/IXI516-HH-2297_T1.nii.gz",
        "ixi/IXI526-HH-2392_T1.nii.gz",
    ]
    assert [subject_of(source) for source in sources] == [
        "mslub/patient01",
        "mslub/patient01",
        "mslub/patient03",
        "ds/sub-01",
        "ds/sub-01",
        "ixi/IXI516-HH-2297",
        "ixi/IXI526-HH-2392",
    ]
    for seed in range(10):
        train, val = subject_level_split(sources, 0.4, seed)
        assert len(val) and len(train)
        assert not {subject_of(sources[i]) for i in train} & {subject_of(sources[i]) for i in val}


# --- loss and metrics -------------------------------------------------------------------------


def test_grade_class_weights() -> None:
    torch.testing.assert_close(grade_class_weights([0, 1, 2, 2, 1, 0]), torch.ones(3))
    torch.testing.assert_close(grade_class_weights([0, 0, 0, 1]), torch.tensor([4 / 9, 4 / 3, 0.0]))


def test_motion_loss_is_cross_entropy_when_bins_match() -> None:
    target = {"grade": torch.tensor([0, 2]), "rms_mm": torch.tensor([0.5, 15.0])}
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    # KL(p || p) = 0; the offset keeps log 0 (far bins) finite
    output = GradeRmsOutput(logits, (RMS_BINS.soft_label(target["rms_mm"]) + 1e-30).log())
    loss = GradeRmsLoss(torch.ones(3))(output, target)
    expected = torch.nn.functional.cross_entropy(logits, target["grade"])
    torch.testing.assert_close(loss, expected)
    worse = GradeRmsOutput(logits, output.mm_log_probs.flip(0))
    assert GradeRmsLoss(torch.ones(3))(worse, target) > loss


def test_binary_metrics_on_known_values() -> None:
    truth = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    assert balanced_accuracy(truth, truth) == 1
    assert balanced_accuracy(truth, np.zeros(8)) == 0.5
    assert balanced_accuracy([0, 1, 2, 2], [0, 0, 0, 0]) == pytest.approx(1 / 3)
    pred = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    assert sensitivity(truth, pred) == pytest.approx(2 / 3)
    assert specificity(truth, pred) == pytest.approx(4 / 5)
    assert balanced_accuracy(truth, pred) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert math.isnan(sensitivity(np.zeros(3), np.ones(3)))


def test_regression_metrics_on_known_values() -> None:
    y = np.array([0.0, 1.0, 4.0, 9.0, 16.0])
    assert r2_score(y, y) == 1
    assert r2_score(y, np.full(5, y.mean())) == 0
    assert spearman(y, np.exp(y)) == pytest.approx(1)
    assert spearman(y, -y) == pytest.approx(-1)
    assert math.isnan(r2_score(np.ones(3), y[:3]))
    assert math.isnan(spearman(y, np.ones(5)))


def test_motion_metrics_of_a_perfect_prediction() -> None:
    rms = torch.tensor([0.0, 3.0, 8.0, 14.0, 20.0])
    grade = torch.tensor([motion_grade(float(value)) for value in rms])
    one_hot = torch.nn.functional.one_hot((rms / 0.5).long(), 50).float()
    output = GradeRmsOutput(torch.nn.functional.one_hot(grade, 3).float(), one_hot.log())
    metrics = motion_metrics(output, {"grade": grade, "rms_mm": rms})
    assert metrics["grade_ba"] == metrics["severe_ba"] == metrics["motion_ba"] == 1
    assert metrics["mm_r2"] == pytest.approx(1) and metrics["mm_mae"] == pytest.approx(0)


# --- engine and saved weights -----------------------------------------------------------------


def train_small(
    sample_dir: Path, epochs: int
) -> tuple[MotionNet, History, DataLoader, GradeRmsLoss]:
    """Build, seed and train a small motion network on the sample folder."""
    dataset = MotionSampleDataset(sample_dir)
    train, val = subject_level_split(dataset.sources, 0.25, seed=0)
    train_set = Subset(MotionSampleDataset(sample_dir, augment=True), train)
    train_loader = DataLoader(train_set, batch_size=4, shuffle=True)
    val_loader = DataLoader(Subset(dataset, val), batch_size=4)
    seed_everything(0)
    model = MotionNet(**SMALL)
    loss = GradeRmsLoss(grade_class_weights(dataset.grades[train]))
    history = fit(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-2),
        loss,
        train_loader,
        val_loader,
        epochs=epochs,
        seed=0,
        device="cpu",
        metrics=motion_metrics,
        progress=False,
    )
    return model, history, val_loader, loss


def test_training_reduces_the_loss_and_keeps_the_best_epoch(sample_dir: Path) -> None:
    model, history, val_loader, loss = train_small(sample_dir, epochs=10)
    losses = [record.train_loss for record in history.epochs]
    assert losses[-1] < 0.8 * losses[0], losses
    assert set(history.best.val_metrics) >= {"grade_ba", "severe_ba", "mm_r2", "mm_spearman"}
    assert history.best.val_loss == min(record.val_loss for record in history.epochs)
    val_loss, _ = evaluate(model, val_loader, loss, torch.device("cpu"), progress=False)
    assert val_loss == pytest.approx(history.best.val_loss)
    _, again, _, _ = train_small(sample_dir, epochs=2)
    assert [r.train_loss for r in again.epochs] == losses[:2]


def test_save_load_round_trip_and_model_card(sample_dir: Path) -> None:
    seed_everything(1)
    model = MotionNet(**SMALL).eval()
    table = sample_dir / "labels.tsv"
    card = {
        "training_files": [table],
        "hyperparameters": {"model": SMALL, "lr": 3e-3},
        "validation_metrics": {"grade_ba": 0.5},
        "seed": 1,
    }
    card_path = save_model(model, sample_dir / "weights" / "motion.pt", card)
    loaded = load_model(sample_dir / "weights" / "motion.pt", MotionNet, **SMALL)
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.inference_mode():
        for expected, actual in zip(model(x), loaded(x), strict=True):
            torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    written = json.loads(card_path.read_text())
    assert card_path.name == "motion.json"
    sha = hashlib.sha256(table.read_bytes()).hexdigest()
    assert written["training_files"] == [{"path": str(table), "sha256": sha}]
    weights_sha = hashlib.sha256((sample_dir / "weights" / "motion.pt").read_bytes()).hexdigest()
    assert written["weights"] == {"path": "motion.pt", "sha256": weights_sha}
    assert written["bidsqc_version"] == __version__ and written["seed"] == 1
    assert {"git_version", "command_line", "date", "hyperparameters"} <= set(written)
    with pytest.raises(ValueError, match="lacks seed"):
        save_model(model, sample_dir / "other.pt", {k: v for k, v in card.items() if k != "seed"})


def test_roc_auc_on_known_values() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert roc_auc([0, 0, 1], [0.1, 0.4, 0.3]) == 0.5
    assert np.isnan(roc_auc([1, 1], [0.1, 0.2]))


def test_registration_metrics_per_misalignment_size() -> None:
    rms = torch.tensor([0.0, 0.0, 3.0, 5.0, 10.0])
    # The network ranks the 3 mm pair below one aligned pair, every larger one above both.
    p_misregistered = torch.tensor([0.1, 0.6, 0.4, 0.9, 0.95])
    logits = torch.stack([torch.zeros(5), torch.logit(p_misregistered)], dim=1)
    mm = RMS_BINS.soft_label(rms).log()
    target = {"grade": (rms >= 2).long(), "rms_mm": rms}
    metrics = registration_metrics(GradeRmsOutput(logits, mm), target)
    assert metrics["auc_2_4"] == 0.5
    assert metrics["auc_4_plus"] == 1.0
    assert metrics["auc"] == pytest.approx(5 / 6)
    assert metrics["mm_spearman"] == pytest.approx(1.0)
