"""Tests for the networks: output shapes, input checks, frozen encoder, soft bins and the
registration-QC network's alignment features."""

from __future__ import annotations

import pytest
import torch

from bidsqc.data import HEAD_BOX_SHAPE
from bidsqc.networks import (
    RMS_BINS,
    Conv5Encoder,
    EdgeAlignment,
    MotionNet,
    RegistrationNet,
    RigidStep,
    SoftBins,
)


@pytest.mark.parametrize(
    ("channels", "spatial"),
    [((8, 16, 32, 64, 128), (64, 64, 64)), ((4, 8, 16), (8, 12, 10))],
)
def test_shapes(channels: tuple[int, ...], spatial: tuple[int, ...]) -> None:
    net = MotionNet(channels=channels).eval()
    x = torch.randn(2, 1, *spatial)
    with torch.inference_mode():
        output = net(x)
        embedding = net.embed(x)
    assert output.grade_logits.shape == (2, 3)
    assert output.mm_log_probs.shape == (2, RMS_BINS.n_bins)
    assert embedding.shape == (2, channels[-1])
    torch.testing.assert_close(output.mm_log_probs.exp().sum(dim=1), torch.ones(2))


def test_head_box_forward() -> None:
    encoder = Conv5Encoder().eval()
    with torch.inference_mode():
        assert encoder(torch.randn(1, 1, *HEAD_BOX_SHAPE)).shape == (1, 128)


@pytest.mark.parametrize(
    "shape",
    [(1, 32, 32, 32), (1, 2, 32, 32, 32), (1, 1, 32, 16, 32)],
    ids=["4d", "channels", "small"],
)
def test_bad_input_names_the_expected_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(batch, 1, X, Y, Z\) with X, Y, Z >= 32"):
        Conv5Encoder(in_channels=1)(torch.zeros(shape))


def test_frozen_encoder_stays_frozen_in_train_mode() -> None:
    net = MotionNet()
    net.freeze_encoder()
    net.train()
    assert not any(parameter.requires_grad for parameter in net.encoder.parameters())
    assert all(parameter.requires_grad for parameter in net.trunk.parameters())
    assert not net.encoder.training and net.trunk.training
    running_mean = net.encoder.blocks[1].running_mean.clone()
    net(torch.randn(2, 1, 32, 32, 32))
    torch.testing.assert_close(net.encoder.blocks[1].running_mean, running_mean)


@pytest.mark.parametrize("rms_mm", [4.0, 4.5, 7.3, 11.7, 16.35, 20.5])
@pytest.mark.parametrize("sigma_mm", [0.5, 1.0, 2.0])
def test_soft_label_recovers_rms(rms_mm: float, sigma_mm: float) -> None:
    """Within 2 sigma of the ends of [0, 24.5] mm the cut-off label is biased, as documented."""
    label = RMS_BINS.soft_label(torch.tensor([rms_mm]), sigma_mm)
    torch.testing.assert_close(label.sum(dim=1), torch.ones(1))
    half_bin = RMS_BINS.max_mm / (RMS_BINS.n_bins - 1) / 2
    assert abs(float(RMS_BINS.expectation(label.log())[0]) - rms_mm) < half_bin


def test_soft_label_bias_at_zero() -> None:
    label = RMS_BINS.soft_label(torch.tensor([0.0]), sigma_mm=1.0)
    assert float(RMS_BINS.expectation(label.log())[0]) == pytest.approx(0.65, abs=0.01)


@pytest.mark.parametrize("index", [0, 17, 49])
def test_expectation_of_one_hot_is_the_bin_centre(index: int) -> None:
    probs = torch.zeros(1, 50)
    probs[0, index] = 1
    assert float(RMS_BINS.expectation(probs.log())[0]) == pytest.approx(index * 0.5)


def test_soft_bins_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="rms_mm must lie in"):
        RMS_BINS.soft_label(torch.tensor([3.0, 30.0]))
    with pytest.raises(ValueError, match=r"shape \(batch, 50\)"):
        RMS_BINS.expectation(torch.zeros(2, 40))
    with pytest.raises(ValueError, match="n_bins"):
        SoftBins(n_bins=1, max_mm=10.0)


def test_edge_alignment_sees_coinciding_edges_whatever_the_contrast() -> None:
    volume = torch.zeros(1, 1, 24, 24, 24)
    volume[..., 8:16, 8:16, 8:16] = 1.0
    inverted = 1.0 - volume  # an edge of opposite sign, as FLAIR against T1w
    shifted = volume.roll(3, dims=2)
    features = EdgeAlignment()
    aligned = features(torch.cat([volume, inverted], dim=1))
    moved = features(torch.cat([shifted, inverted], dim=1))
    assert aligned.shape == (1, EdgeAlignment.out_channels, 24, 24, 24)
    torch.testing.assert_close(aligned[:, :2], torch.cat([volume, inverted], dim=1))
    edges = aligned[0, 3] > 0.5
    assert aligned[0, 2][edges].mean() > 0.95  # every edge of one lies on an edge of the other
    assert moved[0, 2][edges].mean() < 0.5
    with pytest.raises(ValueError, match="pair"):
        features(volume)


def test_registration_network_takes_pairs() -> None:
    net = RegistrationNet(channels=(4, 8)).eval()
    with torch.no_grad():
        output = net(torch.rand(3, 2, *HEAD_BOX_SHAPE))
        assert net.embed(torch.rand(1, 2, *HEAD_BOX_SHAPE)).shape == (1, 8)
    assert output.grade_logits.shape == (3, 2)
    assert output.mm_log_probs.shape == (3, RMS_BINS.n_bins)
    with pytest.raises(ValueError, match="pair"):
        net(torch.rand(1, 1, *HEAD_BOX_SHAPE))


def _blobs(shape: tuple[int, int, int] = (40, 40, 40)) -> torch.Tensor:
    """A smooth volume with edges in every orientation: a few Gaussian blobs."""
    axes = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")
    centres = [(14, 16, 20), (26, 22, 18), (20, 28, 26), (18, 12, 14)]
    return sum(
        torch.exp(-sum((axis - c) ** 2 for axis, c in zip(axes, centre, strict=True)) / 18)
        for centre in centres
    )


def _rigid_step_rms(step: RigidStep, moving: torch.Tensor, reference: torch.Tensor) -> float:
    return float(torch.expm1(step(torch.stack([moving, reference])[None])[0, 0]))


def test_rigid_step_reads_a_shift_whatever_the_contrast() -> None:
    volume = _blobs()
    region = torch.zeros(volume.shape, dtype=torch.bool)
    region[6:34, 6:34, 6:34] = True
    step = RigidStep(region, voxel_mm=2.0)
    assert _rigid_step_rms(step, volume, volume) == pytest.approx(0.0, abs=1e-3)
    assert _rigid_step_rms(step, 1.0 - volume, volume) == pytest.approx(0.0, abs=1e-3)
    # One voxel (2 mm) along y is 2 mm RMS; the first-order step falls short as shifts grow.
    readings = [_rigid_step_rms(step, volume.roll(k, dims=1), volume) for k in (1, 2)]
    assert readings[0] == pytest.approx(2.0, rel=0.25)
    assert readings[0] < readings[1]
    inverted = _rigid_step_rms(step, 1.0 - volume.roll(1, dims=1), volume)
    assert inverted == pytest.approx(readings[0], rel=0.1)
    with pytest.raises(ValueError, match="grid of the region"):
        step(torch.zeros(1, 2, 32, 32, 32))


def test_rigid_step_evidence_starts_at_zero() -> None:
    """A new network answers as its heads alone do, whatever the rigid step reads; training
    moves the evidence off zero."""
    net = RegistrationNet(channels=(4, 8)).eval()
    pair = torch.rand(2, 2, *HEAD_BOX_SHAPE)
    pair[:, 0] = pair[:, 1].roll(2, dims=1)  # a 4 mm shift, which the rigid step reads
    with torch.no_grad():
        assert net.rigid_step(pair).abs().sum() > 0
        assert torch.count_nonzero(net.evidence(pair)) == 0
    output = net(pair)
    output.grade_logits.sum().backward()
    assert net.rigid_step_head[-1].weight.grad.abs().sum() > 0
