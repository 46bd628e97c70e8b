"""On which acquisitions bidsqc's outputs hold, and why an output is ``n/a`` on the others.

Every network was trained, and every measure's thresholds set, on 3D scans and on clinical 2D
scans with slices of up to 4 mm (the MSLUB T1w and FLAIR of ``docs/training.md``), and all were
validated on the same kinds of scan. Thicker slices are accepted
(:data:`bidsqc.loading.MAX_SLICE_MM`) and registered, and the row records their geometry. On
the held-out images re-sliced to 6 mm (``docs/benchmarks.md``) the 2 mm template grid is mostly
interpolated across the slices, which the networks read as blur and motion (12 and 21 of 26
clean images flagged); only the check of the registration, ``rereg_mm``, and the artefact
network's ``p_noise`` held as on the images as acquired, ``p_noise`` on the real 5-6 mm FLAIRs
too. So on thicker slices the other outputs are ``n/a``, with the reason in ``not_assessed``,
and the decision sends the image to a person.

The same holds of a scan that covers too little of the brain (``brain_coverage``), a slab
planned short of the vertex or of the cerebellum: the template grid beyond its field of view is
zero fill, a hard edge through the brain that the networks read as ghosts, spikes and a bias
field, even in the tiles the scan covers, since each tile is read with the whole head as its
context.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = [
    "ACQUISITION_COLUMNS",
    "MIN_BRAIN_COVERAGE",
    "THICK_SLICE_COLUMNS",
    "VALIDATED_SLICE_MM",
    "assessed",
    "not_assessed",
]

#: The thickest slices (mm) on which the networks and the measures were validated.
VALIDATED_SLICE_MM = 4.5
#: Outputs validated on thicker slices too, with the thickest (mm): the held-out images
#: re-sliced to 6.0-6.6 mm, where they met the bar set before (an AUC of 0.95 or more at
#: moderate severity, at most one of the 26 clean images flagged).
THICK_SLICE_COLUMNS = {"rereg_mm": 6.6, "p_noise": 6.6}
#: The least share of the template brain (``brain_coverage``) that a scan must cover for its
#: outputs to hold. The networks read the zero fill beyond a field of view cut through the
#: brain as artefacts: of the ``train`` heads cut short of the vertex or of the cerebellum
#: (``benchmarks/partial_coverage.py``), 15 of the 17 copies that cover this much or more got
#: their uncut image's verdict, 7 of the 21 that cover less.
MIN_BRAIN_COVERAGE = 0.97
#: Outputs that hold on any acquisition: the coverage itself.
ACQUISITION_COLUMNS = ("brain_coverage",)


def assessed(column: str, acquisition: Mapping[str, float | str]) -> bool:
    """Whether ``column`` is valid for an image of this acquisition: its
    :func:`~bidsqc.loading.acquisition_geometry` and its ``brain_coverage`` (one not known
    counts as valid)."""
    if column in ACQUISITION_COLUMNS:
        return True
    if _number(acquisition, "brain_coverage") < MIN_BRAIN_COVERAGE:
        return False
    return not _number(acquisition, "slice_mm") > THICK_SLICE_COLUMNS.get(
        column, VALIDATED_SLICE_MM
    )


def not_assessed(acquisition: Mapping[str, float | str]) -> str | None:
    """Why some outputs of an image of this acquisition (as for :func:`assessed`) are not
    valid, or None when all are."""
    reasons = []
    coverage = _number(acquisition, "brain_coverage")
    if coverage < MIN_BRAIN_COVERAGE:
        reasons.append(
            f"the scan covers {coverage:.1%} of the brain: the networks and measures are "
            f"validated on scans that cover {MIN_BRAIN_COVERAGE:.0%} or more"
        )
    slice_mm = _number(acquisition, "slice_mm")
    if slice_mm > VALIDATED_SLICE_MM:
        kept = [
            f", {column} on up to {thickest:g} mm"
            for column, thickest in THICK_SLICE_COLUMNS.items()
            if assessed(column, acquisition)
        ]
        reasons.append(
            f"slices of {slice_mm:.1f} mm: the networks and measures are validated on slices of "
            f"up to {VALIDATED_SLICE_MM:g} mm" + "".join(kept)
        )
    return "; ".join(reasons) or None


def _number(acquisition: Mapping[str, float | str], key: str) -> float:
    """The acquisition's value of ``key``; NaN when it has none (``n/a``)."""
    value = acquisition.get(key, math.nan)
    return value if isinstance(value, float) else math.nan
