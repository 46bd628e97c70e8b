"""Registration QC of an image pair: edge-alignment features and one rigid Gauss-Newton step."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from scipy import ndimage as ndi
from torch import Tensor, nn

from bidsqc.data import head_box_brain_mask
from bidsqc.networks.bins import RMS_BINS
from bidsqc.networks.grade_rms import GradeRmsNet

__all__ = [
    "EdgeAlignment",
    "RegistrationNet",
    "RigidStep",
]


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
            normalised intensity per voxel (:func:`bidsqc.inference.inputs.normalise_intensity`).

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
        # A cube's maximum filter is separable: 0.01 s, where max_pool3d took 0.3 s.
        size = 2 * cls.TEMPLATE_MARGIN_VOXELS + 1
        dilated = ndi.maximum_filter(head_box_brain_mask(2), size=size, mode="constant")
        return cls(torch.from_numpy(dilated), voxel_mm=2.0)

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


class RegistrationNet(GradeRmsNet):
    """Whether an image pair is aligned, and by how many mm it is not (registration QC).

    A :class:`GradeRmsNet` on a pair (moving image, reference) with two grades (aligned,
    misregistered) and the error's distribution in mm. :class:`EdgeAlignment` features of the
    pair come before the encoder, and the :class:`RigidStep` of the pair within the template
    brain (and 6 mm around it) goes through a small FC head of its own, whose logits are the
    network's :meth:`evidence`. That head's last layer starts at zero, so that the network
    starts as it would without it, e.g. from weights trained without it.

    Args:
        channels: output channels of each encoder block.
        hidden_features: width of each layer of the trunk.
        dropout: dropout probability before each trunk layer.
        n_bins: number of error bins.

    Input shape ``(2, 96, 112, 96)``, the 2 mm template head box; outputs of shapes ``(2,)``
    and ``(n_bins,)``.
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        hidden_features: Sequence[int] = (256, 64),
        dropout: float = 0.5,
        n_bins: int = RMS_BINS.n_bins,
    ) -> None:
        super().__init__(
            EdgeAlignment.out_channels,
            channels,
            hidden_features,
            dropout,
            n_grades=2,
            n_bins=n_bins,
            features=EdgeAlignment(),
        )
        self.rigid_step = RigidStep.on_template_brain()
        self.rigid_step_head = nn.Sequential(
            nn.Linear(self.rigid_step.out_features, 32),
            nn.ReLU(inplace=True),
            nn.Linear(32, 2 + n_bins),
        )
        nn.init.zeros_(self.rigid_step_head[-1].weight)
        nn.init.zeros_(self.rigid_step_head[-1].bias)

    def evidence(self, x: Tensor) -> Tensor:
        return self.rigid_step_head(self.rigid_step(x))
