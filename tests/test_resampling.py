"""The torch smoothing and resampling compute what ANTs (ITK) computes, to float precision."""

from __future__ import annotations

from pathlib import Path

import ants
import nibabel as nb
import numpy as np
import pytest
import torch

from bidsqc.data import head_box
from bidsqc.preprocessing import field_of_view, reorient_to_ras, resample_through_transform
from bidsqc.resampling import discrete_gaussian_kernel, resample_linear, smooth_gaussian

#: Largest difference from ANTs allowed, relative to the volume's maximum.
TOLERANCE = 1e-4


def relative_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def anti_aliasing_sigma(spacing: np.ndarray, zoom: float = 2.0) -> tuple[float, ...]:
    """The smoothing (mm) of :func:`resample_to_zoom` before resampling to ``zoom`` mm."""
    return tuple(np.sqrt(np.clip(zoom**2 - np.asarray(spacing) ** 2, 0, None)) / 2.355)


def ants_image(img: nb.Nifti1Image) -> ants.ANTsImage:
    return ants.from_nibabel_nifti(nb.Nifti1Image(img.get_fdata(dtype=np.float32), img.affine))


@pytest.fixture(scope="module")
def oblique_head() -> nb.Nifti1Image:
    """A smooth random volume with anisotropic voxels, rotated and shifted in the world."""
    rng = np.random.default_rng(0)
    data = ants.smooth_image(ants.from_numpy(rng.random((60, 70, 24), np.float32)), 2).numpy()
    angle = np.deg2rad(12)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.9, 3.5])
    affine[:3, 3] = [-25.0, -30.0, -40.0]
    return nb.Nifti1Image(data * 1000, affine)


@pytest.mark.parametrize("variance", [0.3, 0.541, 1.7, 6.0])
def test_the_kernel_is_itks(variance: float) -> None:
    impulse = np.zeros((41, 3, 3), np.float32)
    impulse[20, 1, 1] = 1
    response = ants.smooth_image(
        ants.from_numpy(impulse), (variance**0.5, 0, 0), sigma_in_physical_coordinates=False
    ).numpy()[:, 1, 1]
    kernel = discrete_gaussian_kernel(variance)
    radius = kernel.size // 2
    np.testing.assert_allclose(response[20 - radius : 21 + radius], kernel, atol=1e-6)
    assert np.abs(response).sum() == pytest.approx(np.abs(kernel).sum(), abs=1e-5)


def test_smoothing_repeats_the_edges_as_itk(oblique_head: nb.Nifti1Image) -> None:
    data = oblique_head.get_fdata(dtype=np.float32)
    sigma = (1.3, 0.0, 0.7)
    theirs = ants.smooth_image(
        ants.from_numpy(data), sigma, sigma_in_physical_coordinates=False
    ).numpy()
    ours = smooth_gaussian(torch.from_numpy(data), sigma).numpy()
    assert relative_difference(ours, theirs) < TOLERANCE


@pytest.fixture
def sheared_transform(tmp_path: Path) -> Path:
    """An affine transform with scales, shears and a shift, as an ITK file."""
    transform = ants.create_ants_transform(
        transform_type="AffineTransform",
        dimension=3,
        matrix=np.array([[1.05, 0.1, 0], [-0.08, 0.97, 0.05], [0, 0.02, 1.1]]),
        translation=(4.0, -3.0, 6.0),
        center=(1.0, 2.0, 3.0),
    )
    path = tmp_path / "affine.mat"
    ants.write_transform(transform, str(path))
    return path


def test_resampling_through_a_transform_is_ants(
    oblique_head: nb.Nifti1Image, sheared_transform: Path
) -> None:
    path = sheared_transform
    ours = resample_through_transform(oblique_head, path, resolution=2)
    shape, affine = head_box(2)
    fixed = ants.from_nibabel_nifti(nb.Nifti1Image(np.zeros(shape, np.float32), affine))
    moving = ants.smooth_image(  # anti-aliased for the 2 mm box, as resample_to_zoom
        ants_image(reorient_to_ras(oblique_head)),
        anti_aliasing_sigma([0.8, 0.9, 3.5]),
        sigma_in_physical_coordinates=True,
    )
    theirs = ants.apply_transforms(fixed, moving, [str(path)], interpolator="linear").numpy()
    assert (ours.get_fdata() > 0).sum() > 1000  # the image lands inside the box
    assert relative_difference(ours.get_fdata(), theirs) < TOLERANCE


def test_the_field_of_view_is_where_the_resampled_scan_has_voxels(
    oblique_head: nb.Nifti1Image, sheared_transform: Path
) -> None:
    constant = nb.Nifti1Image(np.ones(oblique_head.shape, np.float32), oblique_head.affine)
    sampled = resample_through_transform(constant, sheared_transform, resolution=2).get_fdata()
    covered = field_of_view(constant, sheared_transform, resolution=2)
    assert 1000 < covered.sum() < covered.size / 2
    np.testing.assert_array_equal(covered, sampled > 0)
    # The header alone decides, in whatever order the voxels are stored.
    flipped = oblique_head.as_reoriented([[1, -1], [0, 1], [2, -1]])
    np.testing.assert_array_equal(field_of_view(flipped, sheared_transform, 2), covered)


def test_points_beyond_half_a_voxel_from_the_edge_are_zero() -> None:
    volume = torch.ones(4, 4, 4)
    shift = np.eye(4)
    shift[0, 3] = -0.75  # the first plane falls 0.75 voxel before the volume
    resampled = resample_linear(volume, shift, (5, 4, 4)).numpy()
    np.testing.assert_array_equal(resampled[0], 0)
    np.testing.assert_array_equal(resampled[1:4], 1)  # -0.75 + 1 .. 3 lie within
    np.testing.assert_array_equal(resampled[4], 1)  # 3.25 < 3.5: within half a voxel
