"""Gaussian smoothing and linear resampling of volumes, as ITK does them, in torch.

ANTs runs on one thread (:mod:`bidsqc.preprocessing`): resampling a 1 mm head onto the artefact
network's 1 mm head box took it over 2 s. These functions compute what ITK computes, on torch's
threads (or a GPU), in a fraction of that: the kernel of ITK's ``DiscreteGaussianImageFilter``
with its zero-flux boundaries, and the linear interpolation of its ``ResampleImageFilter`` (what
``ants.smooth_image`` and ``ants.apply_transforms`` run). They agree with ITK to float
precision (``tests/test_resampling.py``), so the networks read the images they were trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import ive

__all__ = [
    "discrete_gaussian_kernel",
    "resample_linear",
    "smooth_gaussian",
]

#: ITK's default truncation: the kernel's tails may miss at most this much of its mass.
MAXIMUM_ERROR = 0.01
#: ITK's default widest kernel, in voxels.
MAXIMUM_KERNEL_WIDTH = 32


def discrete_gaussian_kernel(variance: float) -> np.ndarray:
    r"""Lindeberg's discrete Gaussian of ``variance`` (voxels²), as ITK's ``GaussianOperator``.

    The sampled Gaussian is not the discrete analogue of diffusion; :math:`T(n, t) = e^{-t}
    I_n(t)`, with :math:`I_n` the modified Bessel functions of integer order, is (Lindeberg
    1990): smoothing with it commutes with finite differences. The kernel grows until its
    coefficients hold :math:`1 -` :data:`MAXIMUM_ERROR` of the mass, or reaches
    :data:`MAXIMUM_KERNEL_WIDTH`, and is normalised to sum to 1. Returns it centred, of odd
    length.

    >>> discrete_gaussian_kernel(0.0)
    array([1.])
    >>> np.round(discrete_gaussian_kernel(0.541), 4)
    array([0.0219, 0.164 , 0.6282, 0.164 , 0.0219])
    """
    half = [ive(0, variance), ive(1, variance)]
    total = half[0] + 2 * half[1]
    while total < 1 - MAXIMUM_ERROR and 2 * len(half) + 1 <= MAXIMUM_KERNEL_WIDTH:
        half.append(ive(len(half), variance))
        total += 2 * half[-1]
    half = np.trim_zeros(np.asarray(half), "b") / total
    return np.concatenate([half[:0:-1], half])


def smooth_gaussian(volume: torch.Tensor, sigma: Sequence[float]) -> torch.Tensor:
    """Smooth a 3D volume with :func:`discrete_gaussian_kernel` of standard deviation
    ``sigma`` (voxels, one per axis; 0 leaves an axis alone), one axis at a time, the volume's
    edge values repeated beyond it (ITK's zero-flux Neumann boundary)."""
    for axis, s in enumerate(sigma):
        kernel = discrete_gaussian_kernel(float(s) ** 2)
        if kernel.size == 1:
            continue
        radius = kernel.size // 2
        planes = volume.movedim(axis, 0)
        n = planes.shape[0]
        edges = planes[:1].expand(radius, *planes.shape[1:]), planes[-1:].expand_as(planes[:radius])
        padded = torch.cat([edges[0], planes, edges[1]])
        smoothed = float(kernel[0]) * padded[:n]
        for shift, weight in enumerate(kernel[1:], start=1):
            smoothed.add_(padded[shift : shift + n], alpha=float(weight))
        volume = smoothed.movedim(0, axis)
    return volume


def resample_linear(
    volume: torch.Tensor, index_transform: np.ndarray, shape: Sequence[int]
) -> torch.Tensor:
    """Resample a 3D volume onto a grid of ``shape`` by linear interpolation.

    ``index_transform`` (4x4) maps a voxel index of the new grid to the continuous voxel index
    of ``volume`` it samples. As ITK's linear interpolation, a point within half a voxel of the
    volume's edge takes the edge value, and one beyond that is 0.
    """
    # grid_sample takes (x, y, z) = (k, j, i), scaled so that -1 and 1 are the edge voxels.
    step = 2 / np.maximum(np.asarray(volume.shape, dtype=float) - 1, 1)  # per voxel
    to_grid = np.diag([*step, 1.0])
    to_grid[:3, 3] = -1
    grid = _affine_grid(shape, (to_grid @ index_transform)[[2, 1, 0, 3]], volume.device)
    sampled = F.grid_sample(
        volume[None, None], grid[None], mode="bilinear", padding_mode="border", align_corners=True
    )[0, 0]
    half_voxel = torch.as_tensor(step[::-1] / 2, dtype=grid.dtype, device=grid.device)
    inside = ((grid >= -1 - half_voxel) & (grid < 1 + half_voxel)).all(-1)
    return sampled.masked_fill_(~inside, 0)


def _affine_grid(shape: Sequence[int], transform: np.ndarray, device: torch.device) -> torch.Tensor:
    """``transform[:3]`` applied to every voxel index of a grid of ``shape``: ``(*shape, 3)``."""
    rows = torch.as_tensor(transform[:3], dtype=torch.float32, device=device)
    terms = [
        rows[:, axis] * torch.arange(n, dtype=torch.float32, device=device)[:, None]
        for axis, n in enumerate(shape)
    ]
    return terms[0][:, None, None] + terms[1][None, :, None] + terms[2][None, None, :] + rows[:, 3]
