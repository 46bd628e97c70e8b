"""Networks for motion and registration QC, and the binned mm scale their outputs live on.

The motion network's input is one registered image on the 2 mm template head box
(96 x 112 x 96, RAS), its intensities scaled by :func:`bidsqc.training.normalise_intensity`;
the registration-QC network's is a pair of such images (moving, reference). Everything here is
layers and ``forward``: losses, data, optimisers and file paths belong to
:mod:`bidsqc.training`.

============== ==================================================================================
name           what it is
============== ==================================================================================
Conv5Encoder   five Conv3d-BatchNorm-ReLU-MaxPool blocks and a global average pool (Loizillon
               et al. 2023's Conv5FC3 convolutions, pooled as in SFCN, Peng et al. 2021)
MotionNet      the encoder, a two-layer FC trunk and two heads: motion grade (none, mild, severe)
               and a 50-bin distribution over the Jenkinson RMS motion in mm (Bricout et al.);
               with two input channels and two classes, the registration-QC network
EdgeAlignment  normalised-gradient-field features of an image pair (Haber & Modersitzki 2006),
               which the registration-QC network computes before its encoder
RigidStep      one Gauss-Newton step of rigid registration of a pair's edge maps, the
               registration-QC network's evidence of misregistrations of a voxel or two
ArtefactNet    the encoder on a 64 mm tile of the 1 mm head box in context (the whole box at
               ~3 mm) and its spectrum, a one-layer trunk and two heads: presence of five
               artefacts and a 0-10 quality score (MIQA, Kitware)
TileSpectrum   the whitened log-magnitude spectrum of a tile, which the artefact network computes
               before its encoder: k-space, where a spike is a pair of points
EncoderNet     what they share: the encoder, the trunk, embeddings and a frozen encoder
SoftBins       bins of that distribution: Gaussian soft labels and their expectation in mm;
               MOTION_BINS holds the network's (50 bins, 0 to 24.5 mm)
============== ==================================================================================

:class:`SoftBins` lives here rather than with the training engine because inference needs it to
read a motion estimate in mm off :attr:`MotionOutput.mm_log_probs`.

References
----------
- Loizillon S. et al. Transfer learning from synthetic to routine clinical data for motion
  artefact detection in brain T1-weighted MRI. SPIE Medical Imaging 2023, hal-03831746.
- Bricout C. et al. Synthetic motion for MRI quality control with SFCN (poster).
- Peng H. et al. Accurate brain age prediction with lightweight deep neural networks. Medical
  Image Analysis 68, 101871 (2021), doi:10.1016/j.media.2020.101871.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from bidsqc.data import head_box_brain_mask

__all__ = [
    "ARTEFACT_NAMES",
    "MOTION_BINS",
    "ArtefactNet",
    "ArtefactOutput",
    "Conv5Encoder",
    "EdgeAlignment",
    "EncoderNet",
    "MotionNet",
    "MotionOutput",
    "RigidStep",
    "SoftBins",
    "TileSpectrum",
]


@dataclass(frozen=True)
class SoftBins:
    r"""Equally spaced bins over the motion RMS in mm, for a network that outputs a distribution.

    As SFCN does for brain age (Peng et al. 2021), the target is not one number but a Gaussian
    soft label over bin centres :math:`c_k = k \, \Delta` (:math:`k = 0 \dots n-1`,
    :math:`\Delta = \mathrm{max\_mm} / (n - 1)`):

    .. math::

        p_k(r) = \frac{\exp(-(c_k - r)^2 / 2\sigma^2)}{\sum_j \exp(-(c_j - r)^2 / 2\sigma^2)}

    and the estimate is the expectation :math:`\hat r = \sum_k q_k c_k` of the predicted
    distribution :math:`q`. :data:`MOTION_BINS`, 50 bins 0.5 mm apart from 0 to 24.5 mm, holds
    the whole 6–8° / 6–8 mm range of Loizillon et al. (RMS 14.3–18.4 mm, docs/simulation.md) and
    the 20 mm full scale of the motion severity with room to spare. A first centre at 0 lets the
    network say "no motion" exactly.

    Near the ends of the range the label is cut off, so its expectation is pulled inwards: at
    :math:`r = 0` it is 0.65 mm for :math:`\sigma` = 1 mm and 0.5 mm bins (about
    :math:`\sigma \sqrt{2/\pi}` for narrow bins). Grade thresholds (4.5 and 11.7 mm) are far
    from both ends.

    Args:
        n_bins: number of bins.
        max_mm: centre of the last bin, in mm.

    Examples:
        >>> bins = SoftBins(n_bins=50, max_mm=24.5)
        >>> label = bins.soft_label(torch.tensor([7.3]))
        >>> round(float(bins.expectation(label.log())[0]), 2)
        7.3
    """

    n_bins: int
    max_mm: float

    def __post_init__(self) -> None:
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {self.n_bins}")
        if not self.max_mm > 0:
            raise ValueError(f"max_mm must be positive, got {self.max_mm}")

    def centres(self, device: torch.device | str | None = None) -> Tensor:
        """Bin centres in mm, shape (n_bins,)."""
        return torch.linspace(0.0, self.max_mm, self.n_bins, device=device)

    def soft_label(self, rms_mm: Tensor, sigma_mm: float = 1.0) -> Tensor:
        """Gaussian soft labels, shape (B, n_bins), each summing to 1, of RMS values shape (B,).

        Raises ``ValueError`` for an RMS outside ``[0, max_mm]``, which the bins cannot hold.
        """
        if not sigma_mm > 0:
            raise ValueError(f"sigma_mm must be positive, got {sigma_mm}")
        if not bool(((rms_mm >= 0) & (rms_mm <= self.max_mm)).all()):
            raise ValueError(f"rms_mm must lie in [0, {self.max_mm}] mm, got {rms_mm.tolist()}")
        centres = self.centres(rms_mm.device)
        distance = (centres[None, :] - rms_mm[:, None].to(centres.dtype)) / sigma_mm
        return torch.softmax(-0.5 * distance**2, dim=1)

    def expectation(self, log_probs: Tensor) -> Tensor:
        """Expected motion in mm, shape (B,), of log-probabilities shape (B, n_bins)."""
        if log_probs.ndim != 2 or log_probs.shape[1] != self.n_bins:
            raise ValueError(
                f"expected log-probabilities of shape (batch, {self.n_bins}), "
                f"got {tuple(log_probs.shape)}"
            )
        return log_probs.exp() @ self.centres(log_probs.device).to(log_probs.dtype)


#: The bins of :class:`MotionNet`'s motion head: 50 (Bricout et al.), 0.5 mm apart from 0 mm.
MOTION_BINS = SoftBins(n_bins=50, max_mm=24.5)


class Conv5Encoder(nn.Module):
    """Convolutional encoder: an image to one embedding vector.

    Each block is a 3x3x3 convolution (padding 1, no bias: the batch norm has one), batch
    normalisation, ReLU and 2x2x2 max pooling, so block ``k`` sees the image at 1/2^k of its
    resolution. A global average pool then makes the embedding independent of the input size,
    so any input of at least 2^n voxels per axis (n blocks; 32 for the default five) works.

    The default encoder has 294,472 parameters (a :class:`MotionNet` 347,389). Cost of a
    MotionNet with the defaults on 2 CPU threads (PyTorch 2.13) and a 1 x 96 x 112 x 96 input,
    best of several runs on a machine shared with other jobs: a forward pass takes 0.3 s at
    batch 1 and 0.24 s per sample at batch 4; a training step (forward, backward, Adam) 2.1 s
    at batch 1 and 0.56-0.76 s per sample at batch 4. Batch 1 is slow because PyTorch's CPU
    dispatch sends 3D convolutions of a single sample with few channels to its native,
    single-threaded kernel instead of oneDNN: train with batches of 2 or more.

    Args:
        in_channels: number of input channels: 1 for one image, 2 for an image and the template.
        channels: output channels of each block, one block per entry.

    Input shape ``(in_channels, X, Y, Z)``; output shape ``(channels[-1],)``.

    Examples:
        >>> encoder = Conv5Encoder(in_channels=1)
        >>> encoder(torch.zeros(2, 1, 32, 32, 32)).shape
        torch.Size([2, 128])
    """

    def __init__(
        self, in_channels: int = 1, channels: Sequence[int] = (8, 16, 32, 64, 128)
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {in_channels}")
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        self.in_channels = in_channels
        self.out_features = channels[-1]
        blocks = []
        for n_in, n_out in zip((in_channels, *channels[:-1]), channels, strict=True):
            blocks += [
                nn.Conv3d(n_in, n_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm3d(n_out),
                nn.ReLU(inplace=True),
                nn.MaxPool3d(2),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.min_size = 2 ** len(channels)

    def forward(self, x: Tensor) -> Tensor:
        expected = f"(batch, {self.in_channels}, X, Y, Z) with X, Y, Z >= {self.min_size}"
        if x.ndim != 5 or x.shape[1] != self.in_channels or min(x.shape[2:]) < self.min_size:
            raise ValueError(f"expected an input of shape {expected}, got {tuple(x.shape)}")
        return torch.flatten(nn.functional.adaptive_avg_pool3d(self.blocks(x), 1), 1)


def _check_pair(x: Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != 2:
        raise ValueError(f"expected a pair of shape (batch, 2, X, Y, Z), got {tuple(x.shape)}")


class EdgeAlignment(nn.Module):
    r"""Contrast-invariant alignment features of an image pair: normalised gradient fields.

    For the two channels :math:`a` (moving) and :math:`b` (reference), the normalised gradient
    field (Haber & Modersitzki 2006) is :math:`n_a = \nabla a / \sqrt{|\nabla a|^2 +
    \varepsilon^2}`, close to a unit vector across an edge and to 0 in flat regions. Their
    squared inner product :math:`(n_a \cdot n_b)^2` is 1 where both images have an edge in the
    same orientation, whatever the sign of the contrast (T1w against FLAIR), and falls where
    edges do not coincide: a misregistration shows up voxel by voxel, before any pooling. The
    module returns the two images, that product and the edge strengths :math:`|n_a|^2` and
    :math:`|n_b|^2` (so the network knows where edges are): 5 channels.

    Args:
        epsilon: gradient magnitude below which a region counts as flat, in units of the
            normalised intensity per voxel (:func:`bidsqc.training.normalise_intensity`).

    Input shape ``(2, X, Y, Z)``; output shape ``(5, X, Y, Z)``.

    References:
        E. Haber, J. Modersitzki, "Intensity gradient based registration and fusion of
        multi-modal images", MICCAI 2006, LNCS 4191:726-733.
    """

    out_channels = 5

    def __init__(self, epsilon: float = 0.05) -> None:
        super().__init__()
        self.epsilon = epsilon
        kernel = torch.zeros(3, 1, 3, 3, 3)
        for axis in range(3):  # central differences along x, y and z
            index = [1, 1, 1]
            index[axis] = 2
            kernel[(axis, 0, *index)] = 0.5
            index[axis] = 0
            kernel[(axis, 0, *index)] = -0.5
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        _check_pair(x)
        fields = []
        for channel in range(2):
            gradient = nn.functional.conv3d(x[:, channel : channel + 1], self.kernel, padding=1)
            norm = torch.sqrt((gradient**2).sum(dim=1, keepdim=True) + self.epsilon**2)
            fields.append(gradient / norm)
        moving, reference = fields
        product = (moving * reference).sum(dim=1, keepdim=True) ** 2
        strengths = [(field**2).sum(dim=1, keepdim=True) for field in fields]
        return torch.cat([x, product, *strengths], dim=1)


class RigidStep(nn.Module):
    r"""How far, to first order, a rigid registration would move the moving image of a pair:
    one Gauss-Newton step on the pair's edge maps, as a Jenkinson RMS in mm.

    Each image :math:`I` becomes a contrast-free edge map: the magnitude of the gradient of
    :math:`G_\sigma * I`, normalised as in :class:`EdgeAlignment` (1 across an edge whatever its
    contrast, 0 in flat regions), smoothed by one more voxel so that an edge pulls from a few
    voxels away. If the moving content is displaced by the small rigid motion
    :math:`u(x) = t + \omega \times (x - c)` about the centroid :math:`c` of the region, then
    :math:`e_a(x) \approx e_b(x) - \nabla e_b \cdot u(x)`, linear in :math:`p = (t, \omega)`:
    the residual :math:`e_a - e_b` is :math:`-J p` with the rows
    :math:`J(x) = [\nabla e_b,\ (x - c) \times \nabla e_b]`, and least squares over the
    region gives :math:`\hat p = -(J^\top J)^{-1} J^\top (e_a - e_b)`, the first step of a
    Gauss-Newton rigid registration of the edge maps. Its Jenkinson RMS over a sphere of radius
    :math:`R` about :math:`c` is :math:`\sqrt{|t|^2 + \tfrac{2}{5} R^2 |\omega|^2}`.

    The region is the brain and a margin: the edges of scalp, skull and neck differ from a
    template's from one head to the next, and with them the step would read misregistration in
    aligned images. The step is exact for small misregistrations and saturates beyond the
    reach of the smoothed edges (a few voxels), where the image features of
    :class:`EdgeAlignment` take over. It tells one or two voxels of misregistration from the
    anatomical differences between a subject and a template, which the convolutions, pooled
    from the first block on, blur.

    Args:
        region: boolean volume of the grid, the voxels whose edges are matched.
        sigmas: smoothing scales in voxels; one step per scale.
        voxel_mm: voxel size of the grid in mm.
        radius_mm: radius of Jenkinson's sphere in mm.
        epsilon: gradient magnitude below which a region counts as flat, in units of the
            normalised intensity per voxel.

    Input shape ``(2, *region.shape)``; output shape ``(3 * len(sigmas),)``: per scale, the
    logarithms of 1 + the RMS, its translation part and its rotation part, in mm. A fixed
    function of the input, without gradient.
    """

    def __init__(
        self,
        region: Tensor,
        sigmas: Sequence[float] = (1.0, 2.0),
        voxel_mm: float = 2.0,
        radius_mm: float = 80.0,
        epsilon: float = 0.05,
    ) -> None:
        super().__init__()
        self.sigmas = tuple(sigmas)
        self.voxel_mm = voxel_mm
        self.radius_mm = radius_mm
        self.epsilon = epsilon
        self.out_features = 3 * len(self.sigmas)
        region = torch.as_tensor(region, dtype=torch.bool)
        position = torch.nonzero(region).float() * voxel_mm  # (N, 3), mm
        self.register_buffer("region", region, persistent=False)
        self.register_buffer("arm", (position - position.mean(0)).T.contiguous(), persistent=False)

    #: Margin around the template brain, in 2 mm voxels, of :meth:`on_template_brain`'s region.
    TEMPLATE_MARGIN_VOXELS = 3

    @classmethod
    def on_template_brain(cls) -> RigidStep:
        """The step of the registration-QC network: on the 2 mm head box, within the template
        brain dilated by a cube of :attr:`TEMPLATE_MARGIN_VOXELS` (6 mm)."""
        mask = torch.from_numpy(head_box_brain_mask(2).astype(np.float32))
        margin = cls.TEMPLATE_MARGIN_VOXELS
        dilated = nn.functional.max_pool3d(
            mask[None, None], 2 * margin + 1, stride=1, padding=margin
        )
        return cls(dilated[0, 0] > 0, voxel_mm=2.0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.log1p(self.readings(x)).flatten(1)

    @torch.no_grad()
    def readings(self, x: Tensor) -> Tensor:
        """The step's RMS, translation and rotation parts in mm, shape ``(B, len(sigmas), 3)``."""
        _check_pair(x)
        shape = x.shape[2:]
        if shape != self.region.shape:
            raise ValueError(
                f"expected a pair on the grid of the region, (batch, 2, "
                f"{', '.join(map(str, self.region.shape))}), got {tuple(x.shape)}"
            )
        # Smoothing and central differences are products in k-space (periodic: the head box
        # is empty at its borders).
        omegas = [2 * math.pi * torch.fft.fftfreq(n, device=x.device) for n in shape[:-1]]
        omegas.append(2 * math.pi * torch.fft.rfftfreq(shape[-1], device=x.device))
        omegas = torch.meshgrid(*omegas, indexing="ij")
        squared = sum(omega**2 for omega in omegas)
        differences = [1j * torch.sin(omega) for omega in omegas]

        def gaussian(sigma: float) -> Tensor:
            return torch.exp(-0.5 * sigma**2 * squared)

        def spatial(spectrum: Tensor) -> Tensor:
            return torch.fft.irfftn(spectrum, s=shape, dim=(-3, -2, -1))

        images = torch.fft.rfftn(x, dim=(-3, -2, -1))
        features = []
        for sigma in self.sigmas:
            smoothed = images * gaussian(sigma)
            magnitude = torch.sqrt(sum(spatial(smoothed * d) ** 2 for d in differences))
            edges = torch.fft.rfftn(
                magnitude / torch.sqrt(magnitude**2 + self.epsilon**2), dim=(-3, -2, -1)
            ) * gaussian(1.0)
            moving, reference = edges[:, 0], edges[:, 1]
            residual = spatial(moving - reference)[:, self.region]  # (B, N)
            slope = (
                torch.stack([spatial(reference * d)[:, self.region] for d in differences], dim=1)
                / self.voxel_mm
            )  # (B, 3, N), per mm
            arm = self.arm.expand_as(slope)
            jacobian = torch.cat([slope, torch.linalg.cross(arm, slope, dim=1)], dim=1)
            hessian = jacobian @ jacobian.transpose(1, 2)
            ridge = 1e-6 * hessian.diagonal(dim1=1, dim2=2).mean(1)
            hessian = hessian + ridge[:, None, None] * torch.eye(6, dtype=x.dtype, device=x.device)
            step = -torch.linalg.solve(hessian, jacobian @ residual[:, :, None])[..., 0]
            translation = step[:, :3].norm(dim=1)
            rotation = (0.4 * self.radius_mm**2) ** 0.5 * step[:, 3:].norm(dim=1)
            rms = torch.sqrt(translation**2 + rotation**2)
            features.append(torch.stack([rms, translation, rotation], dim=1))
        return torch.stack(features, dim=1)


class TileSpectrum(nn.Module):
    r"""Appends the whitened log-magnitude spectrum of the first channel: the tile in k-space,
    where a spike is a pair of points.

    A spike, one corrupt k-space sample, adds a plane wave to the whole image: in the image a
    stripe pattern of a few percent of the signal, buried in anatomy, but in the spectrum of
    any tile a bright pair of points off the centre. Anatomy's spectrum falls steeply and
    smoothly with frequency, so the log-magnitude is whitened: from each frequency is taken the
    mean over the shell of frequencies of the same radius. What is left is what breaks the
    spectrum's near-isotropy: a spike's points, ghosting's modulation along the phase-encoding
    axis. (Noise and blur change the fall-off itself, which the whitening removes; the image
    channels show them.) The tile is first tapered by a Hann window, so that its edges, where
    it cuts through anatomy, do not leak a cross of spurious frequencies. Whitening also makes
    the channel independent of the tile's scale; an empty tile gives zeros.

    Input shape ``(C, X, Y, Z)``; output shape ``(C + 1, X, Y, Z)``.
    """

    #: Magnitude floor of the spectrum, far below the content of any tile of a normalised image.
    epsilon = 1e-3

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected a batch of shape (batch, C, X, Y, Z), got {tuple(x.shape)}")
        shape = x.shape[2:]
        tapers = [
            torch.hann_window(n, periodic=False, dtype=x.dtype, device=x.device) for n in shape
        ]
        window = tapers[0][:, None, None] * tapers[1][None, :, None] * tapers[2][None, None, :]
        spatial = (-3, -2, -1)
        tile = x[:, :1]
        tile = (tile - tile.mean(dim=spatial, keepdim=True)) * window
        magnitude = torch.fft.fftshift(torch.fft.fftn(tile, dim=spatial).abs(), dim=spatial)
        spectrum = torch.log(magnitude + self.epsilon).flatten(1)
        shell = self._shells(shape, x.device)
        shell_sums = spectrum.new_zeros(len(x), int(shell.max()) + 1).index_add_(1, shell, spectrum)
        shell_means = shell_sums / torch.bincount(shell)
        whitened = (spectrum - shell_means[:, shell]).reshape(len(x), 1, *shape)
        return torch.cat([x, whitened], dim=1)

    @staticmethod
    def _shells(shape: Sequence[int], device: torch.device) -> Tensor:
        """Index of each frequency's shell (its radius from the centre, rounded down), flat."""
        axes = [torch.arange(n, device=device, dtype=torch.float32) - n // 2 for n in shape]
        squares = sum(g**2 for g in torch.meshgrid(*axes, indexing="ij"))
        return torch.sqrt(squares).long().flatten()


class MotionOutput(NamedTuple):
    """What :class:`MotionNet` returns, for a batch of B images."""

    #: Unnormalised scores of the grades none, mild and severe, shape (B, 3).
    grade_logits: Tensor
    #: Log-probabilities over the motion bins of :class:`SoftBins`, shape (B, n_bins).
    mm_log_probs: Tensor


class EncoderNet(nn.Module):
    """A :class:`Conv5Encoder` and a fully connected trunk (dropout, linear, ReLU per layer),
    for the heads of a subclass to read; what every bidsqc network shares.

    For transfer learning, :meth:`embed` gives the encoder's output and :meth:`freeze_encoder`
    fixes the encoder, so that only the trunk and heads train (as Loizillon et al. fine-tune the
    three FC layers). A frozen encoder stays in eval mode, so its batch statistics are kept too.

    :attr:`thresholds` holds the decision thresholds calibrated for the trained weights (e.g.
    ``{"p_motion": 0.36}``), which :func:`bidsqc.inference.load_network` reads from the model
    card; it is empty for a network that was not calibrated.

    Args:
        in_channels: number of input channels of the encoder.
        channels: output channels of each encoder block.
        hidden_features: width of each layer of the trunk.
        dropout: dropout probability before each trunk layer.
        features: a module applied to the input before the encoder (none by default).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        hidden_features: Sequence[int],
        dropout: float,
        features: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not hidden_features:
            raise ValueError("hidden_features must list at least one layer width")
        self.features = nn.Identity() if features is None else features
        self.encoder = Conv5Encoder(in_channels, channels)
        layers = []
        for n_in, n_out in zip(
            (self.encoder.out_features, *hidden_features[:-1]), hidden_features, strict=True
        ):
            layers += [nn.Dropout(dropout), nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers)
        self.thresholds: dict[str, float] = {}

    def embed(self, x: Tensor) -> Tensor:
        """The encoder's embedding, shape (B, channels[-1])."""
        return self.encoder(self.features(x))

    def freeze_encoder(self) -> None:
        """Stop training the encoder: no gradients, and batch norm kept in eval mode."""
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> EncoderNet:
        super().train(mode)
        if not any(parameter.requires_grad for parameter in self.encoder.parameters()):
            self.encoder.eval()
        return self


class MotionNet(EncoderNet):
    """Motion grade and motion amount (mm) from one registered image.

    An :class:`EncoderNet` and two linear heads, as in Conv5FC3 (Loizillon et al. 2023) with a
    second, SFCN-style head (Bricout et al.) giving a distribution over :class:`SoftBins`.

    The registration-QC network is the same network with ``in_channels=2`` (moving image and
    reference), ``n_grades=2`` (aligned, misregistered), ``edge_alignment=True``, which puts
    :class:`EdgeAlignment` before the encoder, and ``rigid_step=True``: the :class:`RigidStep`
    of the pair within the template brain (and 6 mm around it) goes through a small FC head of
    its own whose scores are added to the two heads' (evidence adds up in logits). Its last
    layer starts at zero, so that the network starts as it would without it, e.g. from weights
    trained without it.

    Args:
        in_channels: number of input channels.
        channels: output channels of each encoder block.
        hidden_features: width of each layer of the trunk.
        dropout: dropout probability before each trunk layer.
        n_grades: number of motion grades.
        n_bins: number of motion bins.
        edge_alignment: compute :class:`EdgeAlignment` features of a 2-channel input first.
        rigid_step: add the evidence of the :class:`RigidStep` of a 2-channel input on the
            2 mm template head box.

    Input shape ``(in_channels, X, Y, Z)``; outputs of shapes ``(n_grades,)`` and ``(n_bins,)``.

    Examples:
        >>> net = MotionNet(in_channels=1)
        >>> net(torch.zeros(2, 1, 32, 32, 32)).mm_log_probs.shape
        torch.Size([2, 50])
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        hidden_features: Sequence[int] = (256, 64),
        dropout: float = 0.5,
        n_grades: int = 3,
        n_bins: int = MOTION_BINS.n_bins,
        edge_alignment: bool = False,
        rigid_step: bool = False,
    ) -> None:
        for option, used in (("edge_alignment", edge_alignment), ("rigid_step", rigid_step)):
            if used and in_channels != 2:
                raise ValueError(f"{option} needs a pair (in_channels=2), got {in_channels}")
        features = EdgeAlignment() if edge_alignment else None
        encoder_channels = EdgeAlignment.out_channels if edge_alignment else in_channels
        super().__init__(encoder_channels, channels, hidden_features, dropout, features)
        self.grade_head = nn.Linear(hidden_features[-1], n_grades)
        self.mm_head = nn.Linear(hidden_features[-1], n_bins)
        self.rigid_step = RigidStep.on_template_brain() if rigid_step else None
        self.rigid_step_head = None
        if rigid_step:
            self.rigid_step_head = nn.Sequential(
                nn.Linear(self.rigid_step.out_features, 32),
                nn.ReLU(inplace=True),
                nn.Linear(32, n_grades + n_bins),
            )
            nn.init.zeros_(self.rigid_step_head[-1].weight)
            nn.init.zeros_(self.rigid_step_head[-1].bias)

    def forward(self, x: Tensor) -> MotionOutput:
        features = self.trunk(self.embed(x))
        grade_logits, mm_logits = self.grade_head(features), self.mm_head(features)
        if self.rigid_step is not None:
            evidence = self.rigid_step_head(self.rigid_step(x))
            n_grades = grade_logits.shape[1]
            grade_logits = grade_logits + evidence[:, :n_grades]
            mm_logits = mm_logits + evidence[:, n_grades:]
        return MotionOutput(
            grade_logits=grade_logits, mm_log_probs=torch.log_softmax(mm_logits, dim=1)
        )


#: Artefacts the artefact network detects, by their :mod:`bidsqc.simulation` names.
ARTEFACT_NAMES = ("ghosting", "spike", "bias", "noise", "blur")


class ArtefactOutput(NamedTuple):
    """What :class:`ArtefactNet` returns, for a batch of B tiles."""

    #: Presence logit of each of :data:`ARTEFACT_NAMES`, shape (B, 5).
    presence_logits: Tensor
    #: Quality score in [0, 10], shape (B,).
    quality: Tensor


class ArtefactNet(EncoderNet):
    """Presence of each artefact and a 0-10 quality score from one 64 mm tile (MIQA-style).

    An :class:`EncoderNet` and two linear heads: one logit per artefact of
    :data:`ARTEFACT_NAMES` (several may be present at once, so each is its own sigmoid), and a
    quality score squashed into [0, 10] by ``10 * sigmoid``. On a 64^3 tile the five pooling
    blocks end at 2^3 voxels, so the first block sees the noise and stripes at 1 mm and the
    last sees a 32 mm neighbourhood, enough for ghosts and blurred edges. A bias field changes
    little over 64 mm, so the tile comes in context (:func:`bidsqc.tiles.tiles_in_context`):
    channel 0 is the tile, channel 1 the whole head at about 3 mm, where the field is a
    brightness that drifts across the brain, and channel 2 marks where the tile lies in it.
    :class:`TileSpectrum` adds the tile's spectrum as a fourth channel, where a spike, a stripe
    of a few percent of the signal in the image, is a bright pair of points.

    Args:
        channels: output channels of each encoder block.
        hidden_features: width of each layer of the trunk.
        dropout: dropout probability before each trunk layer.

    Input shape ``(3, 64, 64, 64)``; outputs of shapes ``(5,)`` and ``()``.

    Examples:
        >>> net = ArtefactNet()
        >>> net(torch.zeros(2, 3, 64, 64, 64)).presence_logits.shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        hidden_features: Sequence[int] = (64,),
        dropout: float = 0.2,
    ) -> None:
        super().__init__(4, channels, hidden_features, dropout, TileSpectrum())
        self.presence_head = nn.Linear(hidden_features[-1], len(ARTEFACT_NAMES))
        self.quality_head = nn.Linear(hidden_features[-1], 1)

    def forward(self, x: Tensor) -> ArtefactOutput:
        features = self.trunk(self.embed(x))
        return ArtefactOutput(
            presence_logits=self.presence_head(features),
            quality=10 * torch.sigmoid(self.quality_head(features)[:, 0]),
        )
