"""Classical image-quality measures (placeholder: being written)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MEASURES", "MeasureInfo"]


@dataclass(frozen=True)
class MeasureInfo:
    """What one measure means, for the JSON column dictionary and the reports."""

    name: str
    description: str
    units: str
    better: str  # "higher", "lower" or a phrase such as "closer to 1"
    reference: str = ""


MEASURES: dict[str, MeasureInfo] = {}
