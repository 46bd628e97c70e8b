"""Image-quality measures on phantoms whose right answer is known, and on the template."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from bidsqc.data import head_box, head_box_brain_mask, load_template, on_head_box
from bidsqc.geometry import JENKINSON_RADIUS_MM, rigid_affine
from bidsqc.measures.alignment import brain_coverage, mask_dice, mask_hd95_mm, nmi, rereg_mm
from bidsqc.measures.catalogue import MEASURES
from bidsqc.measures.iqms import (
    FBER_MAX,
    cjv,
    cnr,
    compute_iqms,
    efc,
    fber,
    fwhm_avg,
    fwhm_axes,
    inu_med,
    inu_range,
    local_snr,
    snr,
    snr_wm_local,
    wm2max,
)
from bidsqc.measures.masks import estimate_brain_mask, own_white_matter
from bidsqc.validity import ACQUISITION_COLUMNS

FWHM_PER_SIGMA = math.sqrt(8 * math.log(2))


@pytest.fixture(scope="module")
def template():
    return load_template(2)


@pytest.fixture(scope="module")
def fine_template(template):
    """The template T1w on the 1 mm head box."""
    return on_head_box(template.t1w, 1)


@pytest.fixture(scope="module")
def template_iqms(template, fine_template):
    return compute_iqms(
        template.t1w,
        template=template,
        bias_field=np.ones(template.shape, np.float32),
        residual=np.eye(4),
        fine=fine_template,
        field_of_view=np.ones(template.shape, bool),
    )


def two_tissue_phantom(mu_gm: float, mu_wm: float, with_air: bool):
    """Halves of a 40^3 block: GM ~ N(mu_gm, 10), WM ~ N(mu_wm, 5); air ~ N(20, 3) around it."""
    rng = np.random.default_rng(0)
    image = np.zeros((60, 60, 60))
    gm = np.zeros(image.shape, bool)
    wm = np.zeros(image.shape, bool)
    gm[10:30, 10:50, 10:50] = True
    wm[30:50, 10:50, 10:50] = True
    image[gm] = rng.normal(mu_gm, 10, gm.sum())
    image[wm] = rng.normal(mu_wm, 5, wm.sum())
    air = ~(gm | wm) if with_air else np.zeros(image.shape, bool)
    image[air] = rng.normal(20, 3, air.sum())
    return image, gm, wm, air


def test_measures_catalogue():
    expected = "snr snr_wm_local cnr cjv efc fber wm2max inu_med inu_range fwhm_avg mask_dice "
    expected += "mask_hd95_mm nmi rereg_mm brain_coverage"
    assert list(MEASURES) == expected.split()
    for name, info in MEASURES.items():
        assert info.name == name
        assert info.description and info.units
        assert info.better in {"higher", "lower", "closer to 1"}
        # Every measure of the image cites its source; the coverage is the scan's geometry.
        assert "doi:10." in info.reference or name in ACQUISITION_COLUMNS


def test_tissue_measures_match_the_phantom():
    image, gm, wm, air = two_tissue_phantom(100, 150, with_air=True)
    assert snr(image, [gm, wm]) == pytest.approx((100 / 10 + 150 / 5) / 2, rel=0.03)
    assert cnr(image, gm, wm, air) == pytest.approx(50 / math.sqrt(9 + 100 + 25), rel=0.03)
    assert cjv(image, gm, wm) == pytest.approx((10 + 5) / 50, rel=0.03)


def test_tissue_measures_read_flair_like_t1w():
    """Swapping which tissue is brighter (FLAIR vs T1w) must not change the sign."""
    t1w, gm, wm, air = two_tissue_phantom(100, 150, with_air=True)
    flair, *_ = two_tissue_phantom(150, 100, with_air=True)
    assert cnr(flair, gm, wm, air) == pytest.approx(cnr(t1w, gm, wm, air), rel=0.01)
    assert cjv(flair, gm, wm) == pytest.approx(cjv(t1w, gm, wm), rel=0.01)


def test_robust_tissue_statistics_ignore_a_minority_of_ventricle_voxels():
    image, gm, wm, air = two_tissue_phantom(100, 150, with_air=True)
    ventricle = wm & (np.arange(60)[None, :, None] < 14)  # 10 % of the white matter
    image[ventricle] = 5.0
    assert cjv(image, gm, wm) == pytest.approx(15 / 50, rel=0.1)


def test_cnr_without_air_uses_the_tissue_noise_alone():
    image, gm, wm, air = two_tissue_phantom(100, 150, with_air=False)
    assert not air.any()
    assert cnr(image, gm, wm, air) == pytest.approx(50 / math.sqrt(125), rel=0.03)


def test_local_snr_reads_the_noise_under_a_bias_field():
    """A bias field of 40 % over 160 mm hides the noise from one ratio, not from 16 mm blocks."""
    noise = np.random.default_rng(5).normal(100, 5, (160, 32, 32))
    ramp = np.linspace(0.8, 1.2, 160)[:, None, None]
    mask = np.ones(noise.shape, bool)
    assert local_snr(noise, mask) == pytest.approx(20, rel=0.03)
    assert local_snr(noise * ramp, mask) == pytest.approx(20, rel=0.05)
    assert snr(noise * ramp, [mask]) < 10


def test_local_snr_counts_only_blocks_mostly_in_the_mask(caplog):
    image = np.random.default_rng(6).normal(100, 5, (32, 32, 32))
    mask = np.zeros(image.shape, bool)
    mask[:16, :16, :16] = True
    image[16:] = np.random.default_rng(7).normal(100, 50, (16, 32, 32))
    assert local_snr(image, mask) == pytest.approx(20, rel=0.05)
    sparse = np.zeros(image.shape, bool)
    sparse[::4, ::4, ::4] = True  # 1/64 of every block
    with caplog.at_level(logging.WARNING, logger="bidsqc.measures"):
        assert math.isnan(local_snr(image, sparse))
    assert "no block" in caplog.text


def test_own_white_matter_follows_the_intensity_in_t1w_and_flair(template, fine_template):
    brain = head_box_brain_mask(1)
    wm_p, gm_p = on_head_box(template.wm, 1), on_head_box(template.gm, 1)
    t1w = own_white_matter(fine_template, wm_p, gm_p, brain)
    flair = own_white_matter(fine_template.max() - fine_template, wm_p, gm_p, brain)
    assert t1w.sum() > 0.5 * ((wm_p > 0.5) & brain).sum()
    assert mask_dice(t1w, flair) > 0.95
    level = np.median(fine_template[t1w])
    assert np.median(fine_template[(gm_p > 0.9) & brain]) < 0.9 * level


def _moved_lines(volume: np.ndarray, share: float, shift: int) -> np.ndarray:
    """``volume`` with a ``share`` of its phase-encoding planes (axis 1) acquired after a
    ``shift``-voxel move along axis 0: the k-space of a brief movement."""
    kspace = np.fft.fftn(volume)
    moved = np.fft.fftn(np.roll(volume, shift, axis=0))
    lines = np.random.default_rng(8).random(volume.shape[1]) < share
    kspace[:, lines] = moved[:, lines]
    return np.abs(np.fft.ifftn(kspace)).astype(np.float32)


def test_snr_wm_local_falls_with_noise_and_with_a_brief_movement(template, fine_template):
    rng = np.random.default_rng(9)
    level = np.percentile(fine_template, 99)
    noisy = fine_template + rng.normal(0, 0.02 * level, fine_template.shape).astype(np.float32)
    noisier = fine_template + rng.normal(0, 0.04 * level, fine_template.shape).astype(np.float32)
    moved = _moved_lines(noisy, share=0.1, shift=4)
    values = [snr_wm_local(image, template) for image in (noisy, noisier, moved)]
    assert values[1] < 0.8 * values[0]
    assert values[2] < 0.9 * values[0]
    assert snr_wm_local(3 * noisy, template) == pytest.approx(values[0], rel=1e-6)


def test_snr_wm_local_needs_the_fine_image(template, template_iqms):
    assert math.isfinite(template_iqms["snr_wm_local"])
    iqms = compute_iqms(
        template.t1w, template=template, bias_field=np.ones(template.shape), residual=np.eye(4)
    )
    assert math.isnan(iqms["snr_wm_local"])
    with pytest.raises(ValueError, match="1 mm head box"):
        snr_wm_local(template.t1w, template)
    with pytest.raises(ValueError, match="non-finite"):
        compute_iqms(
            template.t1w,
            template=template,
            bias_field=np.ones(template.shape),
            residual=np.eye(4),
            fine=np.full(head_box(1)[0], np.nan, np.float32),
        )


def test_wm2max_is_the_white_matter_median_over_the_top_percentile():
    image = np.full((20, 20, 20), 80.0)
    image[:10] = 100.0
    wm = np.zeros(image.shape, bool)
    wm[10:] = True
    assert wm2max(image, wm) == pytest.approx(0.8)


def test_efc_runs_from_one_bright_voxel_to_a_uniform_image():
    shape = (16, 16, 16)
    n = math.prod(shape)
    uniform = np.ones(shape)
    half = np.zeros(shape)
    half[:8] = 1.0
    single = np.zeros(shape)
    single[8, 8, 8] = 1.0
    assert efc(single) == pytest.approx(0.0, abs=1e-12)
    assert efc(uniform) == pytest.approx(1.0)
    expected_half = math.sqrt(n / 2) * math.log(n / 2) / (math.sqrt(n) * math.log(n))
    assert efc(half) == pytest.approx(expected_half)


def test_fber_is_the_energy_ratio_and_finite_with_a_zero_background():
    image = np.zeros((10, 10, 10))
    head = np.zeros(image.shape, bool)
    head[2:8, 2:8, 2:8] = True
    image[head] = 100.0
    assert fber(image, head, ~head) == FBER_MAX
    assert fber(image, head, np.zeros(image.shape, bool)) == FBER_MAX
    image[~head] = 10.0
    assert fber(image, head, ~head) == pytest.approx(100.0)


def test_inu_of_a_constant_and_of_a_ramp_field():
    mask = np.ones((10, 10, 100), bool)
    constant = np.full(mask.shape, 1.3)
    assert inu_med(constant, mask) == pytest.approx(1.3)
    assert inu_range(constant, mask) == pytest.approx(0.0, abs=1e-12)
    ramp = np.broadcast_to(np.linspace(0.8, 1.2, 100), mask.shape)
    assert inu_med(ramp, mask) == pytest.approx(1.0)
    assert inu_range(ramp, mask) == pytest.approx(0.36, abs=0.01)


def test_fwhm_of_smoothed_white_noise():
    sigmas = np.array([1.5, 2.0, 1.0])  # voxels
    zooms = (1.0, 1.0, 2.0)  # mm
    noise = ndi.gaussian_filter(np.random.default_rng(1).standard_normal((64, 64, 64)), sigmas)
    mask = np.zeros(noise.shape, bool)
    mask[4:-4, 4:-4, 4:-4] = True
    expected = FWHM_PER_SIGMA * sigmas * zooms
    assert fwhm_axes(noise, mask, zooms) == pytest.approx(expected, rel=0.1)
    assert fwhm_avg(noise, mask, zooms) == pytest.approx(expected.mean(), rel=0.1)


def test_identical_masks_give_dice_one_and_hd95_zero():
    mask = np.zeros((30, 30, 30), bool)
    mask[5:25, 5:25, 5:25] = True
    assert mask_dice(mask, mask) == 1.0
    assert mask_hd95_mm(mask, mask, (1.0, 1.0, 1.0)) == 0.0


@pytest.mark.parametrize("axis", [0, 2])
def test_a_box_shifted_by_k_voxels(axis):
    zooms = (1.5, 1.0, 1.2)
    a = np.zeros((40, 40, 40), bool)
    a[10:30, 10:30, 10:30] = True
    b = np.roll(a, 3, axis=axis)
    assert mask_dice(a, b) == pytest.approx(17 / 20)
    assert mask_hd95_mm(a, b, zooms) == pytest.approx(3 * zooms[axis])


def test_nmi_is_highest_for_the_image_itself(template):
    image, mask = template.t1w, ndi.binary_dilation(template.brain_mask, iterations=3)
    unrelated = np.random.default_rng(2).uniform(0, 1, image.shape)
    inverted = image.max() - image
    assert nmi(image, image, mask) == pytest.approx(2.0)
    assert nmi(inverted, image, mask) > 1.5
    assert nmi(unrelated, image, mask) < 1.05


def test_estimate_brain_mask_follows_the_brain(template):
    brain = estimate_brain_mask(template.t1w, template.brain_mask)
    shifted = estimate_brain_mask(np.roll(template.t1w, 6, axis=2), template.brain_mask)
    assert mask_dice(brain, template.brain_mask) > 0.95
    assert mask_dice(shifted, template.brain_mask) < 0.9  # 12 mm shift


def test_empty_masks_give_nan_and_a_log(caplog):
    image = np.random.default_rng(3).normal(100, 10, (10, 10, 10))
    empty = np.zeros(image.shape, bool)
    full = np.ones(image.shape, bool)
    with caplog.at_level(logging.WARNING, logger="bidsqc.measures"):
        values = [
            snr(image, [empty, full]),
            cnr(image, empty, full, empty),
            cjv(image, full, empty),
            wm2max(image, empty),
            fber(image, empty, full),
            inu_med(image, empty),
            inu_range(image, empty),
            fwhm_avg(image, empty, (1.0, 1.0, 1.0)),
            mask_dice(empty, empty),
            mask_hd95_mm(empty, full, (1.0, 1.0, 1.0)),
            nmi(image, image, empty),
        ]
    assert all(math.isnan(value) for value in values)
    assert len(caplog.records) >= len(values)


def test_constant_images_give_nan():
    zero = np.zeros((10, 10, 10))
    full = np.ones(zero.shape, bool)
    assert math.isnan(efc(zero))
    assert math.isnan(snr(zero + 5, [full]))
    assert not estimate_brain_mask(zero, full).any()


def test_compute_iqms_on_the_template_is_finite(template_iqms):
    assert list(template_iqms) == list(MEASURES)
    assert all(isinstance(v, float) and math.isfinite(v) for v in template_iqms.values())
    assert template_iqms["mask_dice"] > 0.95
    assert template_iqms["fber"] == FBER_MAX  # skull-stripped: no air


def test_compute_iqms_sees_the_air_of_a_full_head_like_image(template, template_iqms):
    rng = np.random.default_rng(4)
    noisy = np.abs(
        template.t1w + rng.normal(0, 5, template.shape) + 1j * rng.normal(0, 5, template.shape)
    )
    noisy = noisy.astype(np.float32)
    iqms = compute_iqms(
        noisy,
        template=template,
        bias_field=np.ones(template.shape),
        residual=np.eye(4),
        fine=on_head_box(noisy, 1),
        field_of_view=np.ones(template.shape, bool),
    )
    assert all(math.isfinite(v) for v in iqms.values())
    assert iqms["snr_wm_local"] < template_iqms["snr_wm_local"]
    assert iqms["fber"] < FBER_MAX
    assert iqms["cnr"] < template_iqms["cnr"]
    assert iqms["snr"] < template_iqms["snr"]


def test_compute_iqms_flags_a_shifted_image(template, template_iqms):
    shifted = np.roll(template.t1w, (5, 0, 5), axis=(0, 1, 2))
    undo_shift = np.eye(4)
    undo_shift[:3, 3] = (10, 0, -10)  # 10 mm back along x and z (RAS), in ITK's LPS frame
    iqms = compute_iqms(
        shifted, template=template, bias_field=np.ones(template.shape), residual=undo_shift
    )
    assert iqms["mask_dice"] < template_iqms["mask_dice"] - 0.05
    assert iqms["nmi"] < template_iqms["nmi"] - 0.5
    assert iqms["mask_hd95_mm"] > template_iqms["mask_hd95_mm"] + 4
    assert template_iqms["rereg_mm"] == 0
    assert iqms["rereg_mm"] == pytest.approx(10 * math.sqrt(2))


def test_rereg_mm_counts_a_rotation_about_the_brain_centre(template):
    centre = np.multiply(template.brain_centre, (-1, -1, 1))
    rotation = rigid_affine((0, 0, 5), (0, 0, 0), centre)
    expected = JENKINSON_RADIUS_MM * math.sqrt(2 / 5 * 2 * (1 - math.cos(math.radians(5))))
    assert rereg_mm(rotation, template) == pytest.approx(expected)


def test_brain_coverage_is_the_share_of_the_template_brain_in_view(template, template_iqms):
    assert template_iqms["brain_coverage"] == 1
    below = np.zeros(template.shape, bool)
    planes = np.flatnonzero(template.brain_mask.any(axis=(0, 1)))
    middle = planes[len(planes) // 2]
    below[:, :, :middle] = True  # a slab that stops halfway up the brain
    share = template.brain_mask[:, :, :middle].sum() / template.brain_mask.sum()
    assert brain_coverage(below, template) == pytest.approx(share)
    assert 0.3 < share < 0.7
    iqms = compute_iqms(
        template.t1w, template=template, bias_field=np.ones(template.shape), residual=np.eye(4)
    )
    assert math.isnan(iqms["brain_coverage"])  # registered by another pipeline: no field of view


def test_compute_iqms_rejects_another_grid(template):
    with pytest.raises(ValueError, match="template grid"):
        compute_iqms(
            np.zeros((10, 10, 10)), template=template, bias_field=np.ones(10), residual=np.eye(4)
        )
