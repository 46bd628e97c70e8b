"""Networks for motion and registration QC, and the binned mm scale their outputs live on.

The motion network's input is one registered image on the 2 mm template head box
(96 x 112 x 96, RAS), its intensities scaled by :func:`bidsqc.inference.inputs.normalise_intensity`;
the registration-QC network's is a pair of such images (moving, reference). Everything here is
layers and ``forward``: losses, data, optimisers and file paths belong to
:mod:`bidsqc.training`.

================ ================================================================================
name             what it is
================ ================================================================================
Conv5Encoder     five Conv3d-BatchNorm-ReLU-MaxPool blocks and a global average pool (Loizillon
                 et al. 2023's Conv5FC3 convolutions, pooled as in SFCN, Peng et al. 2021)
GradeRmsNet      the encoder, a two-layer FC trunk and two heads: a grade and a 50-bin
                 distribution over a Jenkinson RMS in mm (Bricout et al.)
MotionNet        a GradeRmsNet on one image: motion grade (none, mild, severe) and motion in mm
ProbedMotionNet  a MotionNet whose grade is a linear probe of the embedding (bidsqc-finetune)
RegistrationNet  a GradeRmsNet on an image pair: aligned or misregistered, and the error in mm
EdgeAlignment    normalised-gradient-field features of an image pair (Haber & Modersitzki 2006),
                 which RegistrationNet computes before its encoder
RigidStep        one Gauss-Newton step of rigid registration of a pair's edge maps,
                 RegistrationNet's evidence of misregistrations of a voxel or two
ArtefactNet      the encoder on a 64 mm tile of the 1 mm head box in context (the whole box at
                 ~3 mm) and its spectrum, a one-layer trunk and two heads: presence of six
                 artefacts and a 0-10 quality score (MIQA, Kitware)
TileSpectrum     the whitened log-magnitude spectrum of a tile, which the artefact network computes
                 before its encoder: k-space, where a spike is a pair of points
EncoderNet       what they share: the encoder, the trunk, embeddings and a frozen encoder
SoftBins         bins of that distribution: Gaussian soft labels and their expectation in mm;
                 RMS_BINS holds the networks' (50 bins, 0 to 24.5 mm)
================ ================================================================================

:class:`SoftBins` lives here rather than with the training engine because inference needs it to
read an estimate in mm off :attr:`GradeRmsOutput.mm_log_probs`.

References
----------
- Loizillon S. et al. Transfer learning from synthetic to routine clinical data for motion
  artefact detection in brain T1-weighted MRI. SPIE Medical Imaging 2023, hal-03831746.
- Bricout C. et al. Synthetic motion for MRI quality control with SFCN (poster).
- Peng H. et al. Accurate brain age prediction with lightweight deep neural networks. Medical
  Image Analysis 68, 101871 (2021), doi:10.1016/j.media.2020.101871.
"""

from bidsqc.networks.artefact import ARTEFACT_NAMES, ArtefactNet, ArtefactOutput, TileSpectrum
from bidsqc.networks.bins import RMS_BINS, SoftBins
from bidsqc.networks.encoder import Conv5Encoder, EncoderNet
from bidsqc.networks.grade_rms import GradeRmsNet, GradeRmsOutput
from bidsqc.networks.motion import MotionNet, ProbedMotionNet
from bidsqc.networks.registration import EdgeAlignment, RegistrationNet, RigidStep

__all__ = [
    "ARTEFACT_NAMES",
    "ArtefactNet",
    "ArtefactOutput",
    "Conv5Encoder",
    "EdgeAlignment",
    "EncoderNet",
    "RMS_BINS",
    "MotionNet",
    "ProbedMotionNet",
    "GradeRmsNet",
    "GradeRmsOutput",
    "RegistrationNet",
    "RigidStep",
    "SoftBins",
    "TileSpectrum",
]
