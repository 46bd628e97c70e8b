"""On which acquisitions bidsqc's outputs hold, and why an output is ``n/a`` on the others.

Every network was trained, and every measure's thresholds set, on 3D scans and on clinical 2D
scans with slices of up to 4 mm (the MSLUB T1w and FLAIR of ``docs/training.md``), and all were
validated on the same kinds of scan. Thicker slices are accepted
(:data:`bidsqc.loading.MAX_SLICE_MM`) and registered, and the row records their geometry, but
no output has been shown to mean the same there: the 2 mm template grid is then mostly
interpolated across the slices, which the networks read as blur and motion (held-out images
re-sliced to 6 mm: 12 and 21 of 26 clean ones flagged; ``docs/benchmarks.md``). So their
outputs are ``n/a``, with the reason in ``not_assessed``, and the decision sends the image to a
person.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["VALIDATED_SLICE_MM", "not_assessed"]

#: The thickest slices (mm) on which the networks and the measures were validated.
VALIDATED_SLICE_MM = 4.5


def not_assessed(geometry: Mapping[str, float | str]) -> str | None:
    """Why the outputs of an image with this :func:`~bidsqc.loading.acquisition_geometry` are
    not valid, or None when they are."""
    slice_mm = geometry.get("slice_mm", math.nan)
    if isinstance(slice_mm, float) and slice_mm > VALIDATED_SLICE_MM:
        return (
            f"slices of {slice_mm:.1f} mm: the networks and measures are validated on slices "
            f"of up to {VALIDATED_SLICE_MM:g} mm"
        )
    return None
