"""Tests of the registration-QC pair generator (bidsqc.training.pairs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bidsqc.data import load_template
from bidsqc.geometry import JENKINSON_RADIUS_MM, MISREGISTRATION_THRESHOLD_MM
from bidsqc.inference.inputs import normalise_intensity
from bidsqc.training.pairs import (
    PAIR_KINDS,
    Misalignment,
    RandomMisalignment,
    RandomNonlinearDeformation,
    RegistrationPairDataset,
    deformed,
    misaligned,
    random_label_map,
)


def sampled_rms(matrix: np.ndarray, n_points: int = 400_000, seed: int = 0) -> float:
    """RMS displacement of ``matrix`` over points drawn uniformly in Jenkinson's sphere."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_points, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = JENKINSON_RADIUS_MM * rng.uniform(0, 1, (n_points, 1)) ** (1 / 3)
    points = np.asarray(load_template(2).brain_centre) + radii * directions
    moved = points @ matrix[:3, :3].T + matrix[:3, 3]
    return float(np.sqrt(np.mean(np.sum((moved - points) ** 2, axis=1))))


@pytest.mark.parametrize(
    "misalignment",
    [
        Misalignment(translation=(3.0, -4.0, 0.0)),
        Misalignment(degrees=(5.0, 0.0, -3.0)),
        Misalignment(degrees=(2.0, 4.0, 1.0), translation=(1.0, 2.0, -2.0), scales=(1.05, 0.97, 1)),
    ],
)
def test_the_rms_of_a_misalignment_is_that_of_its_transform(misalignment):
    assert misalignment.rms_mm == pytest.approx(sampled_rms(misalignment.matrix()), rel=0.01)


def test_a_translation_alone_has_its_length_as_rms():
    assert Misalignment(translation=(3.0, -4.0, 0.0)).rms_mm == pytest.approx(5.0)
    assert Misalignment().rms_mm == 0


def test_random_misalignments_have_the_drawn_rms():
    rng = np.random.default_rng(0)
    for low, high in ((0.5, 2.0), (2.0, 4.0), (8.0, 20.0)):
        for _ in range(5):
            drawn = RandomMisalignment((low, high)).sample(rng)
            assert low - 1e-6 <= drawn.rms_mm <= high + 1e-6
    rigid = RandomMisalignment((4.0, 8.0), scaling=False).sample(rng)
    assert rigid.scales == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="rms_range"):
        RandomMisalignment((0.0, 2.0))


def test_misaligned_moves_the_content_with_the_transform():
    volume = np.zeros(load_template(2).shape, dtype=np.float32)
    volume[40, 50, 60] = 1
    # The grid is RAS at 2 mm: +4 mm along x is +2 voxels along the first axis.
    moved = misaligned(volume, Misalignment(translation=(4.0, 0.0, 0.0)))
    assert np.argwhere(moved > 0.5).tolist() == [[42, 50, 60]]
    # The identity resamples every voxel onto itself.
    rng = np.random.default_rng(1)
    noise = rng.random(volume.shape, dtype=np.float32)
    np.testing.assert_allclose(misaligned(noise, Misalignment()), noise, atol=1e-4)


def test_a_nonlinear_deformation_has_no_affine_part_and_the_drawn_size():
    template = load_template(2)
    brain = template.brain_mask
    points = np.c_[np.argwhere(brain), np.ones(brain.sum())]
    deformation = RandomNonlinearDeformation(probability=1, max_displacement_mm=(4.0, 6.0))
    rng = np.random.default_rng(0)
    for _ in range(3):
        field = deformation.sample(rng)
        assert field.shape == (3, *template.shape)
        largest_mm = np.sqrt((field[:, brain] ** 2).sum(axis=0)).max() * template.zooms[0]
        assert 4.0 <= largest_mm <= 6.0
        affine_fit = np.linalg.lstsq(points, field[:, brain].T, rcond=None)[0]
        assert np.abs(affine_fit).max() < 1e-6  # a registration would correct nothing of it
    assert RandomNonlinearDeformation(probability=0).sample(rng) is None


def test_deformed_moves_voxels_by_the_displacement():
    volume = np.zeros((20, 20, 20), dtype=np.float32)
    volume[10, 10, 10] = 1
    shift = np.zeros((3, *volume.shape), dtype=np.float32)
    shift[1] = 2  # I'(v) = I(v + u): the content moves by -u
    moved = deformed(volume, shift)
    assert moved[10, 8, 10] == pytest.approx(1) and moved.sum() == pytest.approx(1)


def test_deformed_template_pairs_stay_aligned(base_volumes, monkeypatch):
    # Without the random acquisition, only the deformation can make the moving image differ
    # from its base volume (or its mirror).
    monkeypatch.setattr("bidsqc.training.pairs.random_acquisition", lambda image, rng: image.copy())
    data = RegistrationPairDataset(
        base_volumes,
        4,
        seed=0,
        kind_probabilities=(1, 0, 0, 0),
        aligned_fraction=1,
        deformation=RandomNonlinearDeformation(probability=1),
    )
    bases = [normalise_intensity(np.load(path)) for path in base_volumes]
    for index in range(2):
        _, moving, _, misalignment = data.pair(index)
        assert misalignment is None and data[index][1]["rms_mm"].item() == 0
        assert not any(
            np.allclose(moving, candidate, atol=1e-3)
            for base in bases
            for candidate in (base, base[::-1])
        )


def test_label_maps_have_shapes_inside_a_dark_background():
    labels = random_label_map((40, 48, 40), np.random.default_rng(0), n_labels=8)
    assert labels.shape == (40, 48, 40)
    assert labels.min() == 0 and 2 < labels.max() <= 7
    assert labels[0, 0, 0] == 0  # a corner lies outside the ellipsoid
    assert labels[20, 24, 20] > 0


@pytest.fixture
def base_volumes(tmp_path: Path) -> list[Path]:
    template = load_template(2)
    paths = []
    for i, scale in enumerate((1.0, 1.3)):
        path = tmp_path / f"base{i}.npy"
        np.save(path, (scale * template.t1w).astype(np.float16))
        paths.append(path)
    return paths


def test_aligned_pairs_are_exact_and_labelled_aligned(base_volumes, monkeypatch):
    # Without the random acquisition, an aligned moving image is its base volume, voxel for
    # voxel (or both channels mirrored): it was never resampled.
    monkeypatch.setattr("bidsqc.training.pairs.random_acquisition", lambda image, rng: image.copy())
    data = RegistrationPairDataset(
        base_volumes, 12, seed=0, kind_probabilities=(1, 0, 0, 0), aligned_fraction=1
    )
    bases = [normalise_intensity(np.load(path)) for path in base_volumes]
    for index in range(4):
        kind, moving, reference, misalignment = data.pair(index)
        assert kind == "template" and misalignment is None
        assert any(
            np.array_equal(moving, candidate) for base in bases for candidate in (base, base[::-1])
        )
        pair, target = data[index]
        assert pair.shape == (2, *load_template(2).shape)
        assert target["rms_mm"].item() == 0 and target["grade"].item() == 0


def test_misaligned_pairs_are_labelled_by_their_rms(base_volumes):
    data = RegistrationPairDataset(base_volumes, 24, seed=3, aligned_fraction=0)
    for index in range(6):
        kind, _, _, misalignment = data.pair(index)
        assert kind in PAIR_KINDS
        _, target = data[index]
        assert target["rms_mm"].item() == pytest.approx(misalignment.rms_mm, rel=1e-5)
        expected = int(misalignment.rms_mm >= MISREGISTRATION_THRESHOLD_MM)
        assert target["grade"].item() == expected


def test_a_seeded_dataset_repeats_itself(base_volumes):
    first, second = (RegistrationPairDataset(base_volumes, 4, seed=7) for _ in range(2))
    for index in range(2):
        np.testing.assert_array_equal(first[index][0].numpy(), second[index][0].numpy())


def test_coregistered_pairs_must_be_given_to_be_drawn(base_volumes):
    with pytest.raises(ValueError, match="none was given"):
        RegistrationPairDataset(base_volumes, 4, kind_probabilities=(0.5, 0, 0, 0.5))
    data = RegistrationPairDataset(
        base_volumes,
        4,
        seed=0,
        coregistered=[tuple(base_volumes)],
        aligned_fraction=1,
        kind_probabilities=(0, 0, 0, 1),
    )
    assert data.pair(0)[0] == "coregistered"


def test_the_expected_fraction_of_misregistered_pairs():
    data = RegistrationPairDataset([Path("unused.npy")], 4, aligned_fraction=0.5)
    # Log-uniform RMS in [0.5, 20] mm: a fraction ln(20/2)/ln(20/0.5) reaches 2 mm.
    assert data.misregistered_fraction == pytest.approx(0.5 * np.log(10) / np.log(40))
