"""Tests for the corruption engine: RMS maths, determinism, identity, replay, ranges, geometry."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
import torch
import torchio as tio
from scipy.spatial.transform import Rotation
from torchio.data.io import nib_to_sitk

from bidsqc.geometry import (
    JENKINSON_RADIUS_MM,
    MOTION_GRADE_THRESHOLDS_MM,
    jenkinson_rms,
    motion_grade,
    motion_rms_mm,
    rigid_affine,
)
from bidsqc.training.simulation import (
    ARTEFACTS,
    Artefact,
    BiasField,
    Blur,
    Corruption,
    Ghosting,
    Motion,
    Noise,
    RandomBiasField,
    RandomBlur,
    RandomCorruption,
    RandomGhosting,
    RandomMotion,
    RandomMotionRms,
    RandomNodding,
    RandomNoise,
    RandomOneOf,
    RandomSpike,
    Spike,
    foreground_intensity,
    generate_corrupted_dataset,
    image_centre_lps,
    nodding_motion,
)
from bidsqc.training.simulation.base import as_scalar_image

R = JENKINSON_RADIUS_MM
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def phantom(
    shape: tuple[int, int, int] = (32, 32, 32),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    scale: float = 1.0,
) -> nb.Nifti1Image:
    """Two-compartment ellipsoid with texture, on an oblique grid."""
    axes = [np.linspace(-1, 1, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    radius = np.sqrt(x**2 + y**2 + z**2)
    data = 100.0 * (radius < 0.75) + 50.0 * (radius < 0.4)
    data += 10 * np.sin(9 * x) * np.cos(7 * y) * (radius < 0.75)
    rotation = Rotation.from_euler("xyz", [10, -5, 20], degrees=True).as_matrix()
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.asarray(spacing)
    affine[:3, 3] = [-12.0, 30.0, 7.5]
    return nb.Nifti1Image((scale * data).astype(np.float32), affine)


def array(image: nb.Nifti1Image) -> np.ndarray:
    return np.asanyarray(image.dataobj)


# --- Jenkinson RMS ----------------------------------------------------------------------------


@pytest.mark.parametrize("centre", [(0, 0, 0), (30, -20, 50)])
def test_identity_gives_zero(centre):
    assert jenkinson_rms(np.eye(4), np.eye(4), R, centre) == 0.0
    assert motion_rms_mm([np.eye(4)], R, centre) == 0.0


def test_pure_translation_gives_its_length():
    pose = rigid_affine((0, 0, 0), (3.0, -4.0, 12.0))
    assert jenkinson_rms(pose, np.eye(4), R, (5, 6, 7)) == pytest.approx(13.0)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("theta", [1.0, 8.0, 90.0])
def test_pure_rotation_about_centre(axis, theta):
    centre = (20.0, -35.0, 10.0)
    degrees = np.zeros(3)
    degrees[axis] = theta
    pose = rigid_affine(degrees, (0, 0, 0), centre)
    expected = R * math.sqrt(4 * (1 - math.cos(math.radians(theta))) / 5)
    assert jenkinson_rms(pose, np.eye(4), R, centre) == pytest.approx(expected)


def test_rotation_about_origin_seen_from_elsewhere():
    # 90 degrees about z at the origin moves c = (10, 0, 0) by (-10, 10, 0):
    # RMS^2 = R^2/5 * 4(1 - cos 90) + 200.
    pose = rigid_affine((0, 0, 90), (0, 0, 0))
    assert jenkinson_rms(pose, np.eye(4), R, (10, 0, 0)) == pytest.approx(
        math.sqrt(R**2 / 5 * 4 + 200)
    )


def test_rotation_and_translation_add_in_quadrature():
    centre = (4.0, 5.0, -6.0)
    pose = rigid_affine((0, 30, 0), (1.0, 2.0, 2.0), centre)
    expected = math.sqrt(R**2 / 5 * 4 * (1 - math.cos(math.radians(30))) + 9)
    assert jenkinson_rms(pose, np.eye(4), R, centre) == pytest.approx(expected)


def test_jenkinson_is_symmetric_for_rigid_transforms():
    rng = np.random.default_rng(3)
    a = rigid_affine(rng.uniform(-20, 20, 3), rng.uniform(-9, 9, 3), (1, 2, 3))
    b = rigid_affine(rng.uniform(-20, 20, 3), rng.uniform(-9, 9, 3), (-4, 0, 8))
    forward = jenkinson_rms(a, b, 60.0, (10, 20, 30))
    assert forward > 1
    assert jenkinson_rms(b, a, 60.0, (10, 20, 30)) == pytest.approx(forward)


def test_jenkinson_rejects_non_4x4():
    with pytest.raises(ValueError, match="affine_b"):
        jenkinson_rms(np.eye(4), np.eye(3))


def test_motion_rms_is_mean_over_poses_and_independent_of_centre():
    translations = [(3, 0, 0), (0, 0, 5)]
    assert motion_rms_mm([]) == 0.0
    assert motion_rms_mm([rigid_affine((0, 0, 0), t) for t in translations]) == 4.0
    motion = Motion(degrees=[[3, -2, 5], [1, 1, 1]], translation=[[1, 2, 3]] * 2, times=[0.3, 0.7])
    centre = (100.0, -50.0, 20.0)
    assert motion_rms_mm(motion.poses(centre), centre=centre) == pytest.approx(motion.strength)


def test_rigid_affine_matches_torchio_and_rotates_about_the_image_centre():
    image = as_scalar_image(phantom((20, 24, 10), (0.72, 0.72, 4.0)))
    motion = Motion(degrees=[[5, -7, 11]], translation=[[1, 2, 3]], times=[0.4])
    centre = image_centre_lps(image)
    sitk_image = nib_to_sitk(image.data, image.affine)
    index = ((np.asarray(image.spatial_shape) - 1) / 2).tolist()
    np.testing.assert_allclose(sitk_image.TransformContinuousIndexToPhysicalPoint(index), centre)
    pose = motion.poses(centre)[0]
    np.testing.assert_allclose(pose[:3, :3] @ centre + pose[:3, 3], centre + [1, 2, 3])
    transforms = tio.Motion(
        degrees=np.array(motion.degrees),
        translation=pose[np.newaxis, :3, 3],
        times=np.array(motion.times),
        image_interpolation="linear",
    ).get_rigid_transforms(np.array(motion.degrees), pose[np.newaxis, :3, 3], sitk_image)
    matrix = np.reshape(transforms[1].GetMatrix(), (3, 3))
    itk_centre = np.array(transforms[1].GetCenter())
    applied = np.eye(4)
    applied[:3, :3] = matrix
    applied[:3, 3] = np.array(transforms[1].GetTranslation()) + itk_centre - matrix @ itk_centre
    np.testing.assert_allclose(applied, pose, atol=1e-12)


def test_motion_rotates_about_the_image_centre():
    # A blob at the grid centre, far from the world origin, is unchanged by a pure rotation
    # about the image centre; about the origin it would move (and a 6 mm shift shows it would
    # be seen).
    shape, spacing = (32, 32, 16), (1.5, 1.5, 3.0)
    grid = np.meshgrid(
        *[(np.arange(n) - (n - 1) / 2) * d for n, d in zip(shape, spacing, strict=True)],
        indexing="ij",
    )
    blob = 100 * np.exp(-sum(axis**2 for axis in grid) / (2 * 6.0**2))
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [60.0, -40.0, 50.0]
    image = nb.Nifti1Image(blob.astype(np.float32), affine)
    motion = Motion(degrees=[[0, 0, 10], [8, 0, 0]], translation=np.zeros((2, 3)), times=[0.3, 0.7])
    assert motion.strength > 5
    np.testing.assert_allclose(array(motion(image)), blob, rtol=0, atol=0.5)
    shifted = Motion(degrees=np.zeros((2, 3)), translation=[[0, 0, 6]] * 2, times=[0.3, 0.7])
    assert np.abs(array(shifted(image)) - blob).max() > 2


def test_rotation_is_right_handed_about_z():
    np.testing.assert_allclose(
        rigid_affine((0, 0, 90), (0, 0, 0)) @ [1, 0, 0, 1], [0, 1, 0, 1], atol=1e-12
    )


# --- motion grades ----------------------------------------------------------------------------


def test_motion_grade_thresholds():
    mild, severe = MOTION_GRADE_THRESHOLDS_MM
    assert [motion_grade(v) for v in (0.0, mild - 1e-9, mild, severe - 1e-9, severe)] == [
        0,
        0,
        1,
        1,
        2,
    ]
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="rms_mm"):
            motion_grade(bad)


@pytest.mark.parametrize(("low", "high", "grade"), [(2, 4, 1), (6, 8, 2)])
def test_loizillon_ranges_get_their_grade(low, high, grade):
    rng = np.random.default_rng(0)
    for num_transforms in (1, 2, 4):
        draw = RandomMotion((low, high), (low, high), num_transforms)
        grades = {motion_grade(draw.sample(rng).strength) for _ in range(300)}
        assert grades == {grade}


def test_boundary_range_is_split():
    rng = np.random.default_rng(0)
    draw = RandomMotion((4, 6), (4, 6))
    grades = [motion_grade(draw.sample(rng).strength) for _ in range(400)]
    assert 0.35 < np.mean(np.equal(grades, 2)) < 0.65
    assert set(grades) == {1, 2}


def test_motion_drawn_by_rms_has_exactly_that_rms():
    rng = np.random.default_rng(0)
    draw = RandomMotionRms(rms_mm=(0.0, 20.0), num_transforms=(2, 8))
    motions = [draw.sample(rng) for _ in range(400)]
    strengths = np.array([motion.strength for motion in motions])
    assert {len(motion.times) for motion in motions} == set(range(2, 9))
    assert strengths.min() >= 0 and strengths.max() <= 20
    # The square root of the RMS is uniform: half below a quarter of the range, 5 mm.
    assert 0.43 < np.mean(strengths < 5) < 0.57
    for target in (0.2, 1.0, 3.7, 12.0):
        motion = RandomMotionRms(rms_mm=(target, target)).sample(rng)
        assert motion.strength == pytest.approx(target, abs=1e-6)
        assert all(0 < time < 1 for time in motion.times)


def test_motion_drawn_by_rms_uniformly():
    rng = np.random.default_rng(1)
    draw = RandomMotionRms(rms_mm=(0.0, 4.0), power=1.0)
    strengths = np.array([draw.sample(rng).strength for _ in range(400)])
    assert 0.43 < np.mean(strengths < 2) < 0.57
    assert strengths.max() <= 4


def test_motion_drawn_by_rms_without_motion_is_identity():
    motion = RandomMotionRms(rms_mm=(0.0, 0.0)).sample(np.random.default_rng(2))
    assert motion.strength == 0.0
    np.testing.assert_allclose(array(motion(phantom())), array(phantom()), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"rms_mm": (-1.0, 2.0)}, "rms_mm"),
        ({"rms_mm": (3.0, 2.0)}, "rms_mm"),
        ({"num_transforms": (0, 2)}, "num_transforms"),
        ({"power": 0.0}, "power"),
    ],
)
def test_motion_drawn_by_rms_checks_its_ranges(arguments, message):
    with pytest.raises(ValueError, match=message):
        RandomMotionRms(**arguments)


def test_nods_pitch_the_head_then_return():
    motion = nodding_motion([0.2, 0.6], [3.0, -2.0], 0.05)
    np.testing.assert_allclose(motion.degrees, [[3, 0, 0], [0, 0, 0], [-2, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(motion.translation, 0)
    np.testing.assert_allclose(motion.times, [0.2, 0.25, 0.6, 0.65])


def test_a_nod_corrupts_less_than_holding_its_pose():
    image = phantom()
    clean = array(image)
    nod = nodding_motion([0.7], 8.0, 0.05)
    held = Motion([[8.0, 0, 0]], [[0.0, 0, 0]], [0.7])
    nod_error, held_error = (np.abs(array(m(image)) - clean).sum() for m in (nod, held))
    assert 0 < nod_error < 0.8 * held_error


def test_nods_are_drawn_within_their_ranges():
    rng = np.random.default_rng(3)
    draw = RandomNodding(nods=(3, 5), degrees=(1.0, 4.0), duration=(0.01, 0.02))
    for motion in (draw.sample(rng) for _ in range(100)):
        pitch = np.abs(np.asarray(motion.degrees)[::2, 0])
        assert 3 <= pitch.size <= 5 and ((1 <= pitch) & (pitch <= 4)).all()
        starts, ends = np.asarray(motion.times).reshape(-1, 2).T
        assert (np.diff(motion.times) > 0).all()
        assert ((0.01 - 1e-9 <= ends - starts) & (ends - starts <= 0.02 + 1e-9)).all()
    with pytest.raises(ValueError, match="duration"):
        RandomNodding(duration=(0.05, 0.5))


def test_one_of_draws_each_candidate_by_its_weight():
    rng = np.random.default_rng(0)
    choice = RandomOneOf({RandomBlur(fwhm=(1.0, 1.0)): 3, RandomNoise(std=(0.1, 0.1)): 1})
    names = [choice.sample(rng).name for _ in range(2000)]
    assert names.count("blur") / len(names) == pytest.approx(0.75, abs=0.03)
    never = RandomOneOf({RandomBlur(): 1, RandomNoise(): 0})
    assert {never.sample(rng).name for _ in range(50)} == {"blur"}
    with pytest.raises(ValueError, match="positive weight"):
        RandomOneOf({RandomBlur(): 0})
    with pytest.raises(ValueError, match="weight"):
        RandomOneOf({RandomBlur(): -1})


# --- artefacts on images ----------------------------------------------------------------------

ZERO = {
    "bias": BiasField(coefficients=[0.0] * 20),
    "ghosting": Ghosting(num_ghosts=4, axis=1, intensity=0.0),
    "spike": Spike(positions=[[0.3, 0.6, 0.1]], intensity=0.0),
    "blur": Blur(fwhm=0.0),
    "noise": Noise(std=0.0, seed=7),
}


@pytest.mark.parametrize("name", sorted(ZERO))
def test_zero_strength_is_identity(name):
    image = phantom()
    artefact = ZERO[name]
    assert artefact.severity == 0.0
    np.testing.assert_array_equal(array(artefact(image)), array(image))


def test_motion_without_displacement_is_identity():
    image = phantom()
    motion = Motion(degrees=np.zeros((2, 3)), translation=np.zeros((2, 3)), times=[0.3, 0.6])
    assert motion.severity == 0.0
    np.testing.assert_allclose(array(motion(image)), array(image), rtol=0, atol=1e-4)


def _strengths(name: str, value: float) -> Artefact:
    """One artefact of each kind whose strength grows with ``value`` in (0, 1]."""
    return {
        "motion": lambda: Motion([[4 * value] * 3] * 2, [[4 * value] * 3] * 2, [0.3, 0.7]),
        "bias": lambda: BiasField([0.0] + [0.05 * value * (-1) ** i for i in range(19)]),
        "ghosting": lambda: Ghosting(num_ghosts=2, axis=0, intensity=value),
        "spike": lambda: Spike([[0.6, 0.55, 0.3]], intensity=0.4 * value),
        "blur": lambda: Blur(fwhm=3 * value),
        "noise": lambda: Noise(std=0.15 * value, seed=1),
    }[name]()


@pytest.mark.parametrize("name", list(ARTEFACTS))
def test_severity_is_monotonic_in_strength(name):
    artefacts = [_strengths(name, value) for value in (0.25, 0.5, 0.75, 1.0)]
    severities = [artefact.severity for artefact in artefacts]
    assert all(0 < s <= 1 for s in severities)
    assert np.all(np.diff(severities) > 0)
    if name != "motion":  # k-space motion saturates in image energy; see docs/simulation.md
        image = phantom()
        change = [np.abs(array(a(image)) - array(image)).mean() for a in artefacts]
        assert np.all(np.diff(change) > 0)


def test_severity_saturates_at_one():
    assert Noise(std=1.0, seed=0).severity == 1.0
    assert Ghosting(num_ghosts=2, axis=0, intensity=1.0).severity == 1.0


def test_noise_is_relative_to_foreground():
    low, high = phantom(), phantom(scale=16.0)
    noise = Noise(std=0.1, seed=3)
    np.testing.assert_allclose(array(noise(high)), 16 * array(noise(low)), rtol=1e-5, atol=1e-3)
    residual = array(noise(low)) - array(low)
    inside = array(low) >= 100
    assert np.std(residual[inside]) == pytest.approx(
        0.1 * foreground_intensity(array(low)), rel=0.1
    )


# --- random draws, determinism, replay --------------------------------------------------------


def every_artefact() -> RandomCorruption:
    return RandomCorruption(probabilities=1.0)


def test_same_seed_same_volume_different_seed_different_volume():
    image = phantom()
    first, record = every_artefact()(image, np.random.default_rng(11))
    again, record_again = every_artefact()(image, np.random.default_rng(11))
    other, record_other = every_artefact()(image, np.random.default_rng(12))
    assert array(first).tobytes() == array(again).tobytes()
    assert record.to_dict() == record_again.to_dict()
    assert record.to_dict() != record_other.to_dict()
    assert not np.array_equal(array(first), array(other))


def test_record_is_json_and_replays_to_the_same_volume():
    image = phantom()
    corrupted, record = every_artefact()(image, np.random.default_rng(5))
    loaded = json.loads(json.dumps(record.to_dict()))
    assert [entry["name"] for entry in loaded["artefacts"]] == list(ARTEFACTS)
    assert loaded["motion_rms_mm"] == record.motion_rms_mm > 0
    replayed = Corruption.from_dict(loaded)(image)
    assert array(replayed).tobytes() == array(corrupted).tobytes()


def test_probabilities_choose_the_subset():
    image = phantom()
    draw = RandomCorruption(
        [RandomNoise(), RandomBlur(), RandomGhosting()], probabilities=[1, 0, 1]
    )
    _, record = draw(image, np.random.default_rng(0))
    assert [a.name for a in record.artefacts] == ["noise", "ghosting"]
    assert record.severities["blur"] == 0.0 and record.severities["noise"] > 0
    assert record.motion_rms_mm == 0.0


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: RandomMotion(degrees=(4, 2)), "degrees"),
        (lambda: RandomMotion(translation="large"), "translation"),
        (lambda: RandomMotion(num_transforms=0), "num_transforms"),
        (lambda: RandomMotion(image_interpolation="magic"), "magic"),
        (lambda: RandomGhosting(intensity=(0, 1.5)), "intensity"),
        (lambda: RandomGhosting(num_ghosts=(1, 3)), "num_ghosts"),
        (lambda: RandomGhosting(axes=(3,)), "axes"),
        (lambda: RandomSpike(num_spikes=(0.5, 2)), "num_spikes"),
        (lambda: RandomBiasField(coefficients=-1), "coefficients"),
        (lambda: RandomBiasField(order=-1), "order"),
        (lambda: RandomBlur(fwhm=(1, float("nan"))), "fwhm"),
        (lambda: RandomNoise(std=(0.1, 0.05)), "std"),
        (lambda: RandomCorruption(probabilities=1.5), "probabilities"),
        (lambda: RandomCorruption([RandomBlur()], probabilities=[1, 1]), "probabilities"),
        (lambda: Motion(degrees=[[0, 0, 0]], translation=[[0, 0, 0]], times=[1.2]), "times"),
        (lambda: BiasField(coefficients=[0.0] * 5), "coefficients"),
        (lambda: Motion(degrees=[1, 2, 3, 4], translation=[0, 0, 0], times=[0.5]), "degrees"),
        (lambda: Spike(positions=[[0.5, 0.5, 1.0]], intensity=1), "positions"),
        (lambda: Corruption([Blur(1.0), Blur(2.0)]), "distinct"),
        (lambda: Corruption.from_dict({"artefacts": [{"name": "wrap", "params": {}}]}), "wrap"),
    ],
)
def test_bad_arguments_raise_naming_them(factory, argument):
    with pytest.raises(ValueError, match=argument):
        factory()


# --- geometry and image kinds -----------------------------------------------------------------


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.72, 0.72, 4.0)])
def test_output_keeps_shape_and_affine(spacing):
    image = phantom((40, 36, 12) if spacing[2] > 1 else (32, 32, 32), spacing)
    corrupted, record = every_artefact()(image, np.random.default_rng(2))
    assert len(record.artefacts) == len(ARTEFACTS)
    assert isinstance(corrupted, nb.Nifti1Image)
    assert corrupted.shape == image.shape
    np.testing.assert_array_equal(corrupted.affine, image.affine)
    assert corrupted.get_data_dtype() == np.float32
    assert np.all(np.isfinite(array(corrupted)))
    assert not np.array_equal(array(corrupted), array(image))


def test_reoriented_images_are_accepted():
    image = phantom((32, 32, 32), (1.0, 1.0, 1.0))
    flipped = image.as_reoriented([[0, -1], [1, 1], [2, 1]])  # negative strides
    corrupted, _ = every_artefact()(flipped, np.random.default_rng(2))
    np.testing.assert_array_equal(corrupted.affine, flipped.affine)


def test_blur_is_physical_on_anisotropic_voxels():
    # A 4 mm FWHM blurs 0.72 mm voxels far more than 4 mm slices.
    image = phantom((40, 40, 16), (0.72, 0.72, 4.0))
    data = array(image)
    blurred = array(Blur(fwhm=4.0)(image))
    in_plane = np.abs(np.diff(blurred, axis=0)).mean() / np.abs(np.diff(data, axis=0)).mean()
    through = np.abs(np.diff(blurred, axis=2)).mean() / np.abs(np.diff(data, axis=2)).mean()
    assert in_plane < through


def test_torchio_image_in_torchio_image_out():
    image = tio.ScalarImage(
        tensor=torch.from_numpy(array(phantom())[np.newaxis]), affine=phantom().affine
    )
    original = image.data.clone()
    corrupted = Ghosting(num_ghosts=3, axis=2, intensity=0.8)(image)
    assert isinstance(corrupted, tio.ScalarImage)
    np.testing.assert_array_equal(corrupted.affine, image.affine)
    assert torch.equal(image.data, original)
    assert not torch.equal(corrupted.data, original)


def test_rejects_4d_and_multichannel_images():
    with pytest.raises(ValueError, match="3D"):
        Blur(1.0)(nb.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)))
    with pytest.raises(ValueError, match="channel"):
        Blur(1.0)(tio.ScalarImage(tensor=torch.zeros(2, 4, 4, 4)))


# --- pre-generation ---------------------------------------------------------------------------


def test_generate_corrupted_dataset(tmp_path):
    bases = []
    for index, spacing in enumerate([(1.0, 1.0, 1.0), (0.72, 0.72, 4.0)]):
        path = tmp_path / f"sub-{index}_T1w.nii.gz"
        nb.save(phantom((24, 24, 24) if index == 0 else (32, 32, 10), spacing), path)
        bases.append(path)
    draw = RandomCorruption([RandomMotion(), RandomNoise()], probabilities=[0.5, 1])
    labels = generate_corrupted_dataset(
        bases, tmp_path / "out", n_per_image=2, seed=9, corruption=draw
    )
    rows = list(csv.DictReader(labels.open(), delimiter="\t"))
    assert [row["filename"] for row in rows] == [
        "0000_sub-0_T1w_corrupt-000.nii.gz",
        "0000_sub-0_T1w_corrupt-001.nii.gz",
        "0001_sub-1_T1w_corrupt-000.nii.gz",
        "0001_sub-1_T1w_corrupt-001.nii.gz",
    ]
    for row in rows:
        output = nb.load(tmp_path / "out" / row["filename"])
        sidecar = json.loads(
            (tmp_path / "out" / row["filename"].replace(".nii.gz", ".json")).read_text()
        )
        base = nb.load(row["base_image"])
        np.testing.assert_array_equal(output.affine, base.affine)
        replayed = Corruption.from_dict(sidecar)(base)
        np.testing.assert_array_equal(output.get_fdata(dtype=np.float32), array(replayed))
        assert float(row["severity_noise"]) == pytest.approx(sidecar["severity"]["noise"])
        assert sidecar["severity"]["noise"] > 0
        assert float(row["motion_rms_mm"]) == pytest.approx(sidecar["motion_rms_mm"])

    # Copy (i, k) depends only on (seed, i, k): more copies leave the first ones unchanged.
    again = generate_corrupted_dataset(
        bases, tmp_path / "again", n_per_image=3, seed=9, corruption=draw
    )
    assert len(list(csv.DictReader(again.open(), delimiter="\t"))) == 6
    for row in rows:
        sidecar = row["filename"].replace(".nii.gz", ".json")
        assert (tmp_path / "out" / sidecar).read_text() == (
            tmp_path / "again" / sidecar
        ).read_text()
    with pytest.raises(ValueError, match="n_per_image"):
        generate_corrupted_dataset(bases, tmp_path / "x", n_per_image=0, seed=1)


@pytest.mark.skipif(not DATA.is_dir(), reason="shared MRI data not available")
def test_real_clinical_flair_at_native_resolution():
    path = DATA / "mslub" / "longitudinal_raw" / "patient01" / "study1_FLAIR.nii.gz"
    image = nb.load(path)
    draw = RandomCorruption(
        [RandomBiasField(), RandomGhosting(axes=(0, 1)), RandomNoise()], probabilities=1
    )
    corrupted, record = draw(image, np.random.default_rng(0))
    assert corrupted.shape == image.shape
    np.testing.assert_array_equal(corrupted.affine, image.affine)
    assert all(0 < record.severities[name] <= 1 for name in ("bias", "ghosting", "noise"))
