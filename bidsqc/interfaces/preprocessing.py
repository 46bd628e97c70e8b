"""nipype interfaces over loading (:mod:`bidsqc.loading`) and :mod:`bidsqc.preprocessing`."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bidsqc.interfaces import ImageOutputSpec, ThreadedImageInputSpec
from bidsqc.loading import check_sidecar, load_anatomical
from bidsqc.preprocessing import (
    register_to_template,
    reorient_to_ras,
    resample_to_zoom,
    set_ants_threads,
)

__all__ = ["CheckImage", "RegisterToTemplate", "ResampleToZoom"]


class _CheckImageInputSpec(BaseInterfaceInputSpec):
    in_file = traits.Str(mandatory=True, desc="image path (a symlink may dangle)")
    sidecar = traits.Str("", usedefault=True, desc="JSON sidecar path, empty if none")
    stamp = traits.Str(mandatory=True, desc="size and mtime of in_file, so reruns see edits")


class _CheckImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="in_file, once it passed every check")


class CheckImage(SimpleInterface):
    """Load an image and its sidecar, and fail with a clear message if they cannot be QC'd."""

    input_spec = _CheckImageInputSpec
    output_spec = _CheckImageOutputSpec

    def _run_interface(self, runtime):
        if self.inputs.sidecar:
            check_sidecar(self.inputs.sidecar)
        load_anatomical(self.inputs.in_file)
        self._results["out_file"] = self.inputs.in_file
        return runtime


class _ResampleInputSpec(ThreadedImageInputSpec):
    zoom = traits.Float(2.0, usedefault=True, desc="isotropic voxel size, mm")


class ResampleToZoom(SimpleInterface):
    """Reorient to RAS+ and resample to isotropic voxels, anti-aliased."""

    input_spec = _ResampleInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        set_ants_threads(self.inputs.num_threads)
        img = reorient_to_ras(load_anatomical(self.inputs.in_file))
        img = resample_to_zoom(img, self.inputs.zoom)
        out_file = Path(runtime.cwd) / "resampled.nii.gz"
        nb.save(img, out_file)
        self._results["out_file"] = str(out_file)
        return runtime


class _RegisterOutputSpec(ImageOutputSpec):
    out_transform = File(exists=True, desc="ITK affine, image to template")


class RegisterToTemplate(SimpleInterface):
    """Affine registration to the bundled template, resampled onto its 2 mm head box."""

    input_spec = ThreadedImageInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        set_ants_threads(self.inputs.num_threads)
        result = register_to_template(nb.load(self.inputs.in_file), runtime.cwd)
        out_file = Path(runtime.cwd) / "registered.nii.gz"
        nb.save(result.registered, out_file)
        self._results.update(
            out_file=str(out_file),
            out_transform=str(result.transform),
        )
        return runtime
