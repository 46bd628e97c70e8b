"""Corruption engine: synthetic MRI artefacts with recorded, replayable parameters.

Every artefact comes as two classes, as in TorchIO: a *random* class that checks its ranges once,
in ``__init__``, and draws parameters from a :class:`numpy.random.Generator`, and a *deterministic*
dataclass that holds every drawn value and applies it. The deterministic object is the label: its
fields go to JSON and :meth:`Corruption.from_dict` replays them into the same volume.

==========  ====================================  ========================  =====================
name        mechanism                             strength (unit)           severity 1 at
==========  ====================================  ========================  =====================
motion      k-space segments from rigid poses     Jenkinson RMS (mm)        20 mm
bias        smooth multiplicative receive field   log max/min (unitless)    ln 4 (4-fold range)
ghosting    periodic k-space plane attenuation    ghost amplitude / signal  0.5 (2 ghosts, s = 1)
spike       one bright k-space point per spike    stripe amplitude / mean   0.5
blur        isotropic Gaussian point spread       FWHM (mm)                 4 mm
noise       complex Gaussian, magnitude (Rician)  sigma / foreground        0.2 (SNR 5)
==========  ====================================  ========================  =====================

``severity = min(1, strength / full_scale)``, so 0 means "not applied" and severities are
comparable across images whatever their intensity scale or voxel size. The table order is the
order :class:`RandomCorruption` applies them in: the object moves, the receive field weights it,
k-space is acquired (ghosts, spikes), reconstruction filters it, and thermal noise is added before
the magnitude is taken.

All artefacts work at native resolution and in native space (anisotropic voxels included) on a
single-channel :class:`torchio.ScalarImage` or a 3D :class:`nibabel.Nifti1Image`; a NIfTI input
gives a float32 NIfTI output with the same affine.
"""

from bidsqc.training.simulation.base import (
    Artefact,
    RandomArtefact,
    RandomOneOf,
    foreground_intensity,
    image_centre_lps,
)
from bidsqc.training.simulation.bias import BiasField, RandomBiasField
from bidsqc.training.simulation.blur import Blur, RandomBlur
from bidsqc.training.simulation.corruption import (
    ARTEFACTS,
    QUALITY_COST,
    Corruption,
    RandomCorruption,
    quality_score,
)
from bidsqc.training.simulation.generation import (
    LABEL_COLUMNS,
    LABELS_TABLE,
    generate_corrupted_dataset,
    save_nifti_sample,
)
from bidsqc.training.simulation.ghosting import Ghosting, RandomGhosting
from bidsqc.training.simulation.motion import (
    Motion,
    RandomMotion,
    RandomMotionRms,
    RandomNodding,
    nodding_motion,
)
from bidsqc.training.simulation.noise import Noise, RandomNoise
from bidsqc.training.simulation.spike import RandomSpike, Spike

__all__ = [
    "ARTEFACTS",
    "Artefact",
    "BiasField",
    "Blur",
    "Corruption",
    "Ghosting",
    "LABELS_TABLE",
    "LABEL_COLUMNS",
    "Motion",
    "Noise",
    "QUALITY_COST",
    "RandomArtefact",
    "RandomBiasField",
    "RandomBlur",
    "RandomCorruption",
    "RandomGhosting",
    "RandomMotion",
    "RandomMotionRms",
    "RandomNodding",
    "RandomNoise",
    "RandomOneOf",
    "RandomSpike",
    "Spike",
    "foreground_intensity",
    "generate_corrupted_dataset",
    "image_centre_lps",
    "nodding_motion",
    "quality_score",
    "save_nifti_sample",
]
