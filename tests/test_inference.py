"""Tests for inference with the networks: batching, mirror averaging, bundled weights."""

from __future__ import annotations

import json

import nibabel as nb
import numpy as np
import pytest
import torch

from bidsqc.data import HEAD_BOX_SHAPE, MODELS_DIR, template_path
from bidsqc.geometry import MOTION_GRADE_THRESHOLDS_MM
from bidsqc.inference.artefacts import predict_artefacts
from bidsqc.inference.inputs import load_preprocessed, normalise_intensity
from bidsqc.inference.models import load_bundled_network, load_network
from bidsqc.inference.motion import UNCALIBRATED_MOTION_THRESHOLD, MotionPrediction, predict_motion
from bidsqc.inference.registration import predict_registration
from bidsqc.networks import RMS_BINS, ArtefactNet, MotionNet, RegistrationNet
from bidsqc.outputs.columns import MOTION_COLUMNS, REGISTRATION_COLUMNS, column_dictionary
from bidsqc.training.cards import file_sha256


@pytest.fixture(scope="module")
def small_network() -> MotionNet:
    torch.manual_seed(0)
    return MotionNet(channels=(4, 8, 8)).eval()


def volumes(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((16, 20, 16), dtype=np.float32) for _ in range(n)]


def test_prediction_columns() -> None:
    distribution = np.zeros(RMS_BINS.n_bins)
    distribution[[10, 30]] = 0.5  # 5 mm and 15 mm
    prediction = MotionPrediction((0.1, 0.3, 0.6), tuple(distribution))
    assert prediction.columns() == pytest.approx(
        {
            "motion_grade": 2,
            "p_motion_none": 0.1,
            "p_motion_mild": 0.3,
            "p_motion_severe": 0.6,
            "motion_mm": 10.0,
        }
    )
    assert set(prediction.columns()) == set(MOTION_COLUMNS)
    record = prediction.to_dict()
    assert len(record["mm_bin_centres"]) == len(record["mm_distribution"]) == 50
    json.dumps(record)


THRESHOLD = 0.3552


@pytest.mark.parametrize(
    ("none", "mild", "severe", "grade"),
    [
        (1 - THRESHOLD + 0.01, 0.0, THRESHOLD - 0.01, 0),  # below the threshold
        (1 - THRESHOLD - 1e-3, THRESHOLD + 1e-3, 0.0, 1),  # just above it
        # "none" the most probable, yet motion called: the likelier grade
        (1 - THRESHOLD - 0.05, 0.05, THRESHOLD, 2),
        (0.1, 0.45, 0.45, 1),  # a tie goes to mild
    ],
)
def test_grade_calls_motion_from_the_calibrated_threshold(
    none: float, mild: float, severe: float, grade: int
) -> None:
    distribution = tuple(np.full(RMS_BINS.n_bins, 1 / RMS_BINS.n_bins))
    assert MotionPrediction((none, mild, severe), distribution, THRESHOLD).grade == grade


def test_an_uncalibrated_grade_calls_motion_when_it_is_the_more_probable() -> None:
    distribution = tuple(np.full(RMS_BINS.n_bins, 1 / RMS_BINS.n_bins))
    assert MotionPrediction((0.55, 0.45, 0.0), distribution).grade == 0
    assert MotionPrediction((0.45, 0.0, 0.55), distribution).grade == 2


def test_predict_motion_grades_at_the_network_threshold(small_network: MotionNet) -> None:
    (prediction,) = predict_motion(small_network, volumes(1))
    assert prediction.threshold == UNCALIBRATED_MOTION_THRESHOLD
    p_motion = 1 - prediction.grade_probabilities[0]
    for threshold, moved in ((p_motion - 1e-3, True), (p_motion + 1e-3, False)):
        small_network.thresholds = {"p_motion": threshold}
        try:
            (prediction,) = predict_motion(small_network, volumes(1))
        finally:
            small_network.thresholds = {}
        assert prediction.threshold == threshold
        assert (prediction.grade > 0) == moved


def test_load_network_reads_the_calibrated_thresholds(tmp_path, small_network) -> None:
    from bidsqc.training.cards import record_calibration, save_model

    card = {
        "training_files": [],
        "hyperparameters": {"network": {"channels": [4, 8, 8]}},
        "validation_metrics": {},
        "seed": 0,
    }
    weights = tmp_path / "motion.pt"
    save_model(small_network, weights, card)
    assert load_network(weights).thresholds == {}
    record_calibration(weights, {"thresholds": {"p_motion": 0.3}, "samples": 10})
    assert load_network(weights).thresholds == {"p_motion": 0.3}
    written = json.loads(weights.with_suffix(".json").read_text())
    assert written["calibration"] == {"thresholds": {"p_motion": 0.3}, "samples": 10}
    assert written["weights"]["sha256"] == file_sha256(weights)  # the rest of the card is kept
    record_calibration(weights, {"thresholds": {"p_motion": 0.4}})  # replaced, not merged
    assert json.loads(weights.with_suffix(".json").read_text())["calibration"] == {
        "thresholds": {"p_motion": 0.4}
    }
    with pytest.raises(ValueError, match="thresholds"):
        record_calibration(weights, {"samples": 10})


def test_bundled_motion_and_artefact_networks_are_calibrated() -> None:
    from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS

    motion = load_bundled_network("motion").thresholds
    assert set(motion) == {"p_motion"} and 0 < motion["p_motion"] < 1
    artefact = load_bundled_network("artefact").thresholds
    assert set(artefact) == set(ARTEFACT_PROBABILITY_COLUMNS.values())


def test_batches_give_the_same_predictions(small_network: MotionNet) -> None:
    data = volumes(5)
    one = predict_motion(small_network, data, batch_size=1)
    three = predict_motion(small_network, data, batch_size=3)
    assert len(one) == len(three) == 5
    for a, b in zip(one, three, strict=True):
        np.testing.assert_allclose(a.grade_probabilities, b.grade_probabilities, atol=1e-5)
        np.testing.assert_allclose(a.mm_distribution, b.mm_distribution, atol=1e-5)
        assert sum(a.grade_probabilities) == pytest.approx(1, abs=1e-5)
        assert sum(a.mm_distribution) == pytest.approx(1, abs=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        predict_motion(small_network, data, batch_size=0)


def test_prediction_does_not_depend_on_the_side(small_network: MotionNet) -> None:
    volume = volumes(1)[0]
    (original,) = predict_motion(small_network, [volume])
    (mirrored,) = predict_motion(small_network, [volume[::-1].copy()])
    for field in ("grade_probabilities", "mm_distribution"):
        np.testing.assert_allclose(getattr(original, field), getattr(mirrored, field), atol=1e-5)


def test_load_preprocessed_scales(tmp_path) -> None:
    data = np.linspace(0, 500, 16 * 20 * 16, dtype=np.float32).reshape(16, 20, 16)
    nb.Nifti1Image(data, np.eye(4)).to_filename(tmp_path / "img.nii.gz")
    scaled = load_preprocessed(tmp_path / "img.nii.gz")
    assert scaled.dtype == np.float32
    assert np.percentile(scaled[scaled > 0], 99) == pytest.approx(1, rel=1e-5)


def test_bundled_motion_weights_load_and_match_their_card() -> None:
    card = json.loads((MODELS_DIR / "motion.json").read_text())
    assert file_sha256(MODELS_DIR / "motion.pt") == card["weights"]["sha256"]
    assert (MODELS_DIR / "motion.pt").stat().st_size < 20e6
    network = load_bundled_network("motion", "cpu")
    assert not network.training
    template = load_preprocessed(template_path(2, "T1w"))
    (prediction,) = predict_motion(network, [template])
    assert prediction.grade == 0  # the template is the average of many still heads
    assert prediction.motion_mm < MOTION_GRADE_THRESHOLDS_MM[0]


def test_motion_columns_are_described_with_the_grade_thresholds() -> None:
    dictionary = column_dictionary(MOTION_COLUMNS)
    mild, severe = MOTION_GRADE_THRESHOLDS_MM
    assert f"{mild} mm" in dictionary["motion_grade"]["Description"]
    assert f"{severe} mm" in dictionary["motion_grade"]["Description"]
    assert dictionary["motion_grade"]["Levels"] == {"0": "none", "1": "mild", "2": "severe"}
    assert dictionary["motion_mm"]["Units"] == "mm"


def test_registration_predictions_judge_pairs(small_network: MotionNet) -> None:
    torch.manual_seed(0)
    network = RegistrationNet(channels=(4, 8, 8)).eval()
    rng = np.random.default_rng(0)
    moving, reference = (rng.random(HEAD_BOX_SHAPE, dtype=np.float32) for _ in range(2))
    one, two = predict_registration(network, [(moving, reference), (reference, moving)])
    assert sum(one.class_probabilities) == pytest.approx(1, abs=1e-5)
    assert set(one.columns()) == {"p_misregistered", "registration_error_mm"}
    assert set(two.columns("_to_t1w")) == set(REGISTRATION_COLUMNS) - set(one.columns())
    assert one.p_misregistered != two.p_misregistered  # the channels are not interchangeable
    with pytest.raises(ValueError, match="expected an input"):
        predict_registration(small_network, [(moving, reference)])


@pytest.mark.skipif(
    not (MODELS_DIR / "registration.pt").is_file(), reason="registration weights not bundled"
)
def test_bundled_registration_weights_load_and_match_their_card() -> None:
    card = json.loads((MODELS_DIR / "registration.json").read_text())
    assert file_sha256(MODELS_DIR / "registration.pt") == card["weights"]["sha256"]
    network = load_bundled_network("registration", "cpu")
    assert isinstance(network, RegistrationNet)
    template = load_preprocessed(template_path(2, "T1w"))
    (prediction,) = predict_registration(network, [(template, template)])
    assert prediction.p_misregistered < 0.5
    assert prediction.error_mm < 2


def test_bundled_artefact_weights_load_and_match_their_card() -> None:
    card = json.loads((MODELS_DIR / "artefact.json").read_text())
    assert file_sha256(MODELS_DIR / "artefact.pt") == card["weights"]["sha256"]
    assert card["architecture"] == "ArtefactNet"
    assert (MODELS_DIR / "artefact.pt").stat().st_size < 5e6
    network = load_bundled_network("artefact", "cpu")
    assert isinstance(network, ArtefactNet)
    assert not network.training
    template = load_preprocessed(template_path(2, "T1w"))
    volume = template.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    # Rician noise of 0.1 x the foreground, as the magnitude of complex Gaussian noise is.
    rng, sigma = np.random.default_rng(0), 0.1 * volume[volume > 0.1].mean()
    noise = rng.normal(0, sigma, (2, *volume.shape))
    noisy = normalise_intensity(np.abs(volume + noise[0] + 1j * noise[1]).astype(np.float32))
    clean, with_noise = (predict_artefacts(network, v).columns() for v in (volume, noisy))
    assert clean["p_noise"] < network.thresholds["p_noise"] <= with_noise["p_noise"]
    # No quality check here: the template, an average of many brains, reads as blurred (p_blur
    # 0.67 and quality 4.9), and noise hides that blur. On real images, noise lowers the score
    # (docs/benchmarks.md: 9.5 clean, 7.5 and 5.9 with mild and moderate noise on val).


def test_site_quality_rates_by_the_two_worse_ratings_together():
    from bidsqc.inference.site_quality import SiteQualityPrediction, predict_site_quality

    assert SiteQualityPrediction((0.6, 0.3, 0.1)).columns()["site_rating"] == 0
    assert SiteQualityPrediction((0.4, 0.25, 0.35)).columns()["site_rating"] == 2
    assert SiteQualityPrediction((0.4, 0.35, 0.25), threshold=0.7).columns()["site_rating"] == 0
    torch.manual_seed(0)
    network = MotionNet(channels=(4, 8), hidden_features=(8,)).eval()
    (prediction,) = predict_site_quality(network, [np.ones((32, 32, 32), dtype=np.float32)])
    columns = prediction.columns()
    assert abs(columns["p_usable"] + columns["p_questionable"] + columns["p_unusable"] - 1) < 1e-5
