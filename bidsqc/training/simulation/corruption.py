"""Several artefacts applied in acquisition order, and the quality score they leave."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import nibabel as nb
import numpy as np
import torchio as tio

from bidsqc.geometry import motion_grade
from bidsqc.training.simulation.base import Artefact, RandomArtefact, check_number, on_image
from bidsqc.training.simulation.bias import BiasField, RandomBiasField
from bidsqc.training.simulation.blur import Blur, RandomBlur
from bidsqc.training.simulation.ghosting import Ghosting, RandomGhosting
from bidsqc.training.simulation.motion import Motion, RandomMotion
from bidsqc.training.simulation.noise import Noise, RandomNoise
from bidsqc.training.simulation.spike import RandomSpike, Spike

__all__ = [
    "ARTEFACTS",
    "Corruption",
    "QUALITY_COST",
    "RandomCorruption",
    "quality_score",
]

ImageT = TypeVar("ImageT", nb.Nifti1Image, tio.ScalarImage)


#: Deterministic artefacts by name, in the physical order :class:`RandomCorruption` applies.
ARTEFACTS: dict[str, type[Artefact]] = {
    cls.name: cls for cls in (Motion, BiasField, Ghosting, Spike, Blur, Noise)
}


#: Quality points, out of 10, that one artefact of severity 1 costs (see :func:`quality_score`).
QUALITY_COST = 6.0


def quality_score(severities: Mapping[str, float]) -> float:
    r"""The 0-10 quality of an image from the severities of its artefacts (MIQA-style).

    :math:`q = \max(0,\ 10 - c \sum_a s_a)` with :math:`c` = :data:`QUALITY_COST`: a clean
    image scores 10, each artefact lowers the score in proportion to its severity :math:`s_a`
    (one severe artefact leaves 4, a mild one at 0.3 costs 1.8), and artefacts add up.
    """
    return max(0.0, 10.0 - QUALITY_COST * sum(severities.values()))


@dataclass
class Corruption:
    """Several artefacts applied in order: the replayable label of one corrupted volume.

    Parameters
    ----------
    artefacts : list of Artefact
        At most one artefact of each name.
    """

    artefacts: list[Artefact] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [artefact.name for artefact in self.artefacts]
        if len(set(names)) != len(names):
            raise ValueError(f"artefacts must have distinct names, got {names}")

    def __call__(self, image: ImageT) -> ImageT:
        """Apply every artefact in order to a float32 copy of ``image``."""

        def apply_all(scalar_image: tio.ScalarImage) -> tio.ScalarImage:
            for artefact in self.artefacts:
                scalar_image = artefact._apply(scalar_image)
            return scalar_image

        return on_image(apply_all, image)

    @property
    def severities(self) -> dict[str, float]:
        """Severity of every known artefact, 0 for those not applied."""
        applied = {artefact.name: artefact.severity for artefact in self.artefacts}
        return {name: applied.get(name, 0.0) for name in ARTEFACTS}

    @property
    def motion_rms_mm(self) -> float:
        """:func:`motion_rms_mm` of the motion artefact, 0 without one."""
        return next((a.strength for a in self.artefacts if isinstance(a, Motion)), 0.0)

    def to_dict(self) -> dict:
        """JSON-serialisable record, replayed by :meth:`from_dict`."""
        return {
            "artefacts": [artefact.to_dict() for artefact in self.artefacts],
            "severity": self.severities,
            "motion_rms_mm": self.motion_rms_mm,
            "motion_grade": motion_grade(self.motion_rms_mm),
        }

    @classmethod
    def from_dict(cls, record: dict) -> Corruption:
        """Rebuild the corruption from :meth:`to_dict` output (derived fields are ignored)."""
        artefacts = []
        for entry in record["artefacts"]:
            if entry["name"] not in ARTEFACTS:
                raise ValueError(f"unknown artefact {entry['name']!r}; known: {list(ARTEFACTS)}")
            artefacts.append(ARTEFACTS[entry["name"]](**entry["params"]))
        return cls(artefacts)


class RandomCorruption:
    """Draw a random subset of artefacts, each independently with its own probability.

    Parameters
    ----------
    artefacts : sequence of RandomArtefact, optional
        Candidates, applied in the given order. The default is every artefact with its default
        ranges, in the physical order of :data:`ARTEFACTS`.
    probabilities : float or sequence of float
        Probability in [0, 1] that each candidate is applied; one value applies to all.
    """

    def __init__(
        self,
        artefacts: Sequence[RandomArtefact] | None = None,
        probabilities: float | Sequence[float] = 0.3,
    ) -> None:
        if artefacts is None:
            artefacts = (
                RandomMotion(),
                RandomBiasField(),
                RandomGhosting(),
                RandomSpike(),
                RandomBlur(),
                RandomNoise(),
            )
        self.artefacts = tuple(artefacts)
        if isinstance(probabilities, (int, float)):
            probabilities = [probabilities] * len(self.artefacts)
        if len(probabilities) != len(self.artefacts):
            raise ValueError(
                f"probabilities must have one value per artefact ({len(self.artefacts)}), "
                f"got {len(probabilities)}"
            )
        self.probabilities = tuple(
            check_number(p, "probabilities", min_value=0, max_value=1) for p in probabilities
        )

    def sample(self, rng: np.random.Generator) -> Corruption:
        """Draw which artefacts apply and their parameters."""
        return Corruption(
            [
                artefact.sample(rng)
                for artefact, probability in zip(self.artefacts, self.probabilities, strict=True)
                if rng.random() < probability
            ]
        )

    def __call__(self, image: ImageT, rng: np.random.Generator) -> tuple[ImageT, Corruption]:
        """Corrupt ``image`` and return it with the record of what was applied."""
        corruption = self.sample(rng)
        return corruption(image), corruption
