"""Thin nipype interfaces over the pure functions of bidsqc (one module per concern).

The input and output specifications they share are defined here.
"""

from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

__all__ = ["ImageInputSpec", "ImageOutputSpec", "ThreadedImageInputSpec"]


class ImageInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="input image")


class ThreadedImageInputSpec(ImageInputSpec):
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="threads for ANTs")


class ImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="output file")
