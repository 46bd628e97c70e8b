"""Each fault of an input image has its own clear message."""

from __future__ import annotations

import gzip

import nibabel as nb
import numpy as np
import pytest

from bidsqc.loading import (
    ImageCheckError,
    acquired_spacing,
    acquisition_geometry,
    check_sidecar,
    load_anatomical,
)

RNG = np.random.default_rng(42)


def save(tmp_path, data, zooms=(1.0, 1.0, 1.0), name="img.nii.gz"):
    path = tmp_path / name
    nb.save(nb.Nifti1Image(data, np.diag([*zooms, 1.0])), path)
    return path


def test_a_good_image_loads_as_float32(tmp_path):
    data = RNG.integers(0, 255, (20, 22, 24)).astype(np.uint8)
    img = load_anatomical(save(tmp_path, data))
    assert img.get_data_dtype() == np.float32
    assert np.array_equal(img.get_fdata(), data)


def test_clinical_thick_slices_load(tmp_path):
    """A 2D FLAIR with 0.45 x 0.45 mm pixels and 8 mm slices is what clinics store."""
    img = load_anatomical(
        save(tmp_path, RNG.random((40, 40, 20)).astype(np.float32), (0.45, 0.45, 8))
    )
    assert img.header.get_zooms() == pytest.approx((0.45, 0.45, 8.0))


def test_acquisition_geometry_reads_the_header_and_the_sidecar(tmp_path):
    path = save(tmp_path, RNG.random((20, 20, 20)).astype(np.float32), (0.5, 6.0, 0.7))
    sidecar = tmp_path / "img.json"
    sidecar.write_text(
        '{"MRAcquisitionType": "2D", "Manufacturer": "Siemens", '
        '"ManufacturersModelName": "Prisma_fit", "MagneticFieldStrength": 3}'
    )
    assert acquisition_geometry(path, sidecar) == pytest.approx(
        {
            "slice_mm": 6.0,
            "in_plane_mm": 0.6,
            "acquisition": "2D",
            "scanner": "Siemens Prisma_fit 3 T",
        }
    )
    sidecar.write_text('{"Manufacturer": " GE ", "MagneticFieldStrength": "1.5"}')
    assert acquisition_geometry(path, sidecar)["scanner"] == "GE"  # a string is no field strength
    empty = tmp_path / "empty.nii.gz"
    empty.touch()
    geometry = acquisition_geometry(empty, None)
    assert np.isnan(geometry["slice_mm"])
    assert geometry["acquisition"] == geometry["scanner"] == "n/a"
    sidecar.write_text("[1, 2]")
    assert acquisition_geometry(path, sidecar)["scanner"] == "n/a"


def _head(shape=(48, 48, 20)) -> np.ndarray:
    """A skull-stripped 'head': a smooth ball of tissue with thermal noise, zero outside."""
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij"))
    radius = np.sqrt((grid**2).sum(axis=0))
    tissue = 100 + 30 * np.sin(6 * grid[0]) * np.cos(4 * grid[1]) + 20 * grid[2]
    noisy = tissue + RNG.normal(0, 5, shape)
    return np.where(radius < 0.9, noisy, 0).astype(np.float32)


def test_acquired_spacing_sees_slices_stored_on_a_finer_grid():
    head = _head()
    assert acquired_spacing(head, (1.0, 1.0, 6.0)) == pytest.approx([1.0, 1.0, 6.0])
    # 6 mm slices exported at 2 mm: each repeated 3 times (nearest neighbour).
    repeated = np.repeat(head, 3, axis=2)
    assert acquired_spacing(repeated, (1.0, 1.0, 2.0)) == pytest.approx([1.0, 1.0, 6.0], rel=0.05)
    # 4 mm slices exported at 2 mm, the slice between two acquired ones their mean (linear).
    between = (head[..., :-1] + head[..., 1:]) / 2
    interleaved = np.stack([head[..., :-1], between], axis=-1).reshape(*head.shape[:2], -1)
    spacing = acquired_spacing(interleaved, (2.0, 2.0, 2.0))
    assert spacing == pytest.approx([2.0, 2.0, 4.0], rel=0.05)
    # The same slices as integers on a 12-bit scale, as scanners store them: rounding to an
    # integer moves a slice by far less than the typical difference between slices.
    rounded = np.round(10 * interleaved).astype(np.int16)
    assert acquired_spacing(rounded, (2.0, 2.0, 2.0))[2] == pytest.approx(4.0, rel=0.05)


def test_acquisition_geometry_reads_the_acquired_slices_from_the_voxels(tmp_path):
    repeated = np.repeat(_head(), 3, axis=2)
    path = save(tmp_path, repeated, (0.5, 0.5, 2.0))
    assert acquisition_geometry(path, None)["slice_mm"] == pytest.approx(2.0)
    geometry = acquisition_geometry(path, None, repeated)
    assert geometry["slice_mm"] == pytest.approx(6.0, rel=0.05)
    assert geometry["in_plane_mm"] == pytest.approx(0.5)


def test_a_single_volume_4d_image_is_squeezed(tmp_path):
    img = load_anatomical(save(tmp_path, RNG.random((20, 20, 20, 1)).astype(np.float32)))
    assert img.shape == (20, 20, 20)


@pytest.mark.parametrize(
    ("data", "zooms", "message"),
    [
        (RNG.random((20, 20, 20, 3)), (1, 1, 1), "4D with 3 volumes"),
        (np.zeros((20, 20, 20)), (1, 1, 1), "constant"),
        (np.full((20, 20, 20), np.nan), (1, 1, 1), "8000 NaN or infinite"),
        (RNG.random((20, 20, 20)), (1, 1, 13), "1.00 x 1.00 x 13.00 mm: slices thicker than 12"),
        (RNG.random((20, 20, 20)), (5, 5, 5), "5.00 x 5.00 x 5.00 mm; bidsqc needs in-plane"),
        (RNG.random((20, 20, 20)), (0.05, 1, 1), "0.05 x 1.00 x 1.00 mm"),
        (RNG.random((20, 20, 4)), (1, 1, 1), "too few voxels"),
    ],
)
def test_bad_images_raise_with_the_path_and_the_fault(tmp_path, data, zooms, message):
    path = save(tmp_path, data.astype(np.float32), zooms)
    with pytest.raises(ImageCheckError, match=message) as error:
        load_anatomical(path)
    assert str(path) in str(error.value)


def test_empty_truncated_missing_and_dangling(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    empty.touch()
    with pytest.raises(ImageCheckError, match="empty file"):
        load_anatomical(empty)
    good = save(tmp_path, RNG.random((30, 30, 30)).astype(np.float32))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ImageCheckError, match="truncated or corrupt"):
        load_anatomical(truncated)
    not_nifti = tmp_path / "text.nii.gz"
    not_nifti.write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(ImageCheckError, match="not a readable NIfTI|truncated or corrupt"):
        load_anatomical(not_nifti)
    with pytest.raises(ImageCheckError, match="does not exist"):
        load_anatomical(tmp_path / "missing.nii.gz")
    dangling = tmp_path / "link.nii.gz"
    dangling.symlink_to(tmp_path / "annex" / "object")
    with pytest.raises(ImageCheckError, match="broken symlink"):
        load_anatomical(dangling)


def test_sidecars(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"RepetitionTime": 2.3}')
    assert check_sidecar(good) == {"RepetitionTime": 2.3}
    broken = tmp_path / "broken.json"
    broken.write_text('{"RepetitionTime": 2.3,,}')
    with pytest.raises(ImageCheckError, match="not valid JSON"):
        check_sidecar(broken)


def test_negative_intensities_become_a_magnitude_image(tmp_path):
    rng = np.random.default_rng(0)
    head = np.zeros((20, 20, 20), dtype=np.float32)
    head[5:15, 5:15, 5:15] = 800 + rng.normal(0, 20, (10, 10, 10))
    offset = load_anatomical(save(tmp_path, head - 1000, name="offset.nii.gz")).get_fdata()
    assert offset.min() == 0
    np.testing.assert_allclose(offset, head - head.min(), atol=1e-3)  # contrast kept
    noisy = head + rng.normal(0, 5, head.shape).astype(np.float32)
    clipped = load_anatomical(save(tmp_path, noisy, name="noisy.nii.gz")).get_fdata()
    assert clipped.min() == 0
    np.testing.assert_allclose(clipped[head > 0], noisy[head > 0], atol=1e-3)


def test_a_constant_pedestal_is_taken_off_and_a_noisy_floor_kept(tmp_path):
    """A background zeroed by the scanner and raised by a scaling intercept is a constant
    pedestal; a background of noise is kept as it is, whatever its level."""
    rng = np.random.default_rng(0)
    head = np.zeros((20, 20, 20), dtype=np.float32)
    head[5:15, 5:15, 5:15] = 800 + rng.normal(0, 20, (10, 10, 10))
    header = nb.Nifti1Header()
    header.set_data_dtype(np.int16)
    scaled = nb.Nifti1Image(np.round(head * 10).astype(np.int16), np.eye(4), header)
    scaled.header.set_slope_inter(0.1, 5.0)
    nb.save(scaled, tmp_path / "intercept.nii.gz")
    loaded = load_anatomical(tmp_path / "intercept.nii.gz").get_fdata()
    assert loaded.min() == 0
    np.testing.assert_allclose(loaded, head, atol=0.06)  # the intercept gone, the contrast kept
    floor = np.abs(head + rng.normal(30, 5, head.shape)).astype(np.float32)
    kept = load_anatomical(save(tmp_path, floor, name="floor.nii.gz")).get_fdata()
    np.testing.assert_allclose(kept, floor, atol=1e-3)
