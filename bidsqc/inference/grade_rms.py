"""What the motion and registration predictions share: batched passes of both sides, mm readings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from bidsqc.networks import RMS_BINS, MotionNet


def worse_than_first(probabilities: Sequence[float], threshold: float) -> int:
    """A three-level grade from its probabilities: 0 while the two worse levels together stay
    below ``threshold``, otherwise the more probable of 1 and 2."""
    first, second, third = probabilities
    if 1 - first < threshold:
        return 0
    return 1 if second >= third else 2


def expectation_mm(distribution: Sequence[float]) -> float:
    """Mean of a distribution over the bins of :data:`bidsqc.networks.RMS_BINS`, in mm."""
    return float(np.dot(distribution, RMS_BINS.centres().numpy()))


def binned_distribution(distribution: Sequence[float]) -> dict[str, list[float]]:
    """A distribution over :data:`bidsqc.networks.RMS_BINS` with its bin centres, for JSON."""
    return {
        "mm_bin_centres": [round(float(c), 4) for c in RMS_BINS.centres()],
        "mm_distribution": list(distribution),
    }


def predict_grade_rms(
    network: MotionNet, inputs: Iterable[np.ndarray], batch_size: int
) -> Iterable[tuple[tuple[float, ...], tuple[float, ...]]]:
    """Class and bin probabilities of each input (C, X, Y, Z), averaged over the input and its
    left-right mirror, computed ``batch_size`` inputs at a time on the network's device."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = next(network.parameters()).device
    network.eval()
    with torch.inference_mode():
        for batch in _batches(inputs, batch_size):
            stacked = torch.from_numpy(np.stack(batch).astype(np.float32, copy=False)).to(device)
            outputs = [network(stacked), network(stacked.flip(2))]
            grade = sum(out.grade_logits.softmax(dim=1) for out in outputs) / 2
            mm = sum(out.mm_log_probs.exp() for out in outputs) / 2
            for g, m in zip(grade.cpu(), mm.cpu(), strict=True):
                yield tuple(g.tolist()), tuple(m.tolist())


def _batches(volumes: Iterable[np.ndarray], size: int) -> Iterable[Sequence[np.ndarray]]:
    batch: list[np.ndarray] = []
    for volume in volumes:
        batch.append(volume)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
