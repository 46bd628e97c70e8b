"""On which acquisitions bidsqc's outputs hold, and why an output is ``n/a`` on the others.

Every network was trained, and every measure's thresholds set, on 3D scans and on clinical 2D
scans with slices of up to 4 mm (the MSLUB T1w and FLAIR of ``docs/training.md``), and all were
validated on the same kinds of scan. Thicker slices are accepted
(:data:`bidsqc.loading.MAX_SLICE_MM`) and registered, and the row records their geometry. On
the held-out images re-sliced to 6 mm (``docs/benchmarks.md``) the 2 mm template grid is mostly
interpolated across the slices, which the networks read as blur and motion (12 and 21 of 26
clean images flagged); only the check of the registration, ``rereg_mm``, held as on the images
as acquired. So on thicker slices the other outputs are ``n/a``, with the reason in
``not_assessed``, and the decision sends the image to a person.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["THICK_SLICE_COLUMNS", "VALIDATED_SLICE_MM", "assessed", "not_assessed"]

#: The thickest slices (mm) on which the networks and the measures were validated.
VALIDATED_SLICE_MM = 4.5
#: Outputs validated on thicker slices too, with the thickest (mm): the held-out images
#: re-sliced to 6.0-6.6 mm.
THICK_SLICE_COLUMNS = {"rereg_mm": 6.6}


def assessed(column: str, geometry: Mapping[str, float | str]) -> bool:
    """Whether ``column`` is valid for an image of this
    :func:`~bidsqc.loading.acquisition_geometry` (a slice thickness not known counts as
    valid)."""
    return not _slice_mm(geometry) > THICK_SLICE_COLUMNS.get(column, VALIDATED_SLICE_MM)


def not_assessed(geometry: Mapping[str, float | str]) -> str | None:
    """Why some outputs of an image with this :func:`~bidsqc.loading.acquisition_geometry`
    are not valid, or None when all are."""
    slice_mm = _slice_mm(geometry)
    if not slice_mm > VALIDATED_SLICE_MM:
        return None
    kept = [
        f", {column} on up to {thickest:g} mm"
        for column, thickest in THICK_SLICE_COLUMNS.items()
        if assessed(column, geometry)
    ]
    return (
        f"slices of {slice_mm:.1f} mm: the networks and measures are validated on slices of up "
        f"to {VALIDATED_SLICE_MM:g} mm" + "".join(kept)
    )


def _slice_mm(geometry: Mapping[str, float | str]) -> float:
    """The geometry's ``slice_mm``; NaN when it has none (``n/a``)."""
    slice_mm = geometry.get("slice_mm", math.nan)
    return slice_mm if isinstance(slice_mm, float) else math.nan
