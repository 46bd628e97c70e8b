"""Thin nipype interfaces over the pure functions of bidsqc (one module per concern).

The input and output specifications they share are defined here.
"""

from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec

__all__ = ["ImageInputSpec", "ImageOutputSpec"]


class ImageInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="input image")


class ImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="output file")
