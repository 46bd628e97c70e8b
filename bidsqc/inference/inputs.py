"""What the networks take: preprocessed images, their intensities scaled."""

from __future__ import annotations

import os

import nibabel as nb
import numpy as np

__all__ = [
    "load_preprocessed",
    "normalise_intensity",
]


def normalise_intensity(volume: np.ndarray) -> np.ndarray:
    """Scale a volume so that the 99th percentile of its positive voxels is 1 (float32).

    Negative values (interpolation undershoot) are set to 0 first, so the background stays 0 and
    a scaled volume scales to itself. The percentile ignores zeros, so it does not depend on how
    much of the box is background. Training and inference must both use this function.

    Raises ``ValueError`` for a volume without a positive voxel.
    """
    data = np.clip(np.asarray(volume, dtype=np.float32), 0, None)
    positive = data[data > 0]
    if positive.size == 0:
        raise ValueError("cannot normalise a volume without any positive voxel")
    return data / np.float32(np.percentile(positive, 99))


def load_preprocessed(path: str | os.PathLike) -> np.ndarray:
    """A preprocessed image as the networks take it: float32, scaled."""
    return normalise_intensity(np.asarray(nb.load(path).dataobj, dtype=np.float32))
