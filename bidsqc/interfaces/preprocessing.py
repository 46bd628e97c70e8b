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

from bidsqc.interfaces import ImageInputSpec, ImageOutputSpec
from bidsqc.loading import check_sidecar, load_anatomical
from bidsqc.preprocessing import (
    coregister_to_reference,
    register_to_template,
    reorient_to_ras,
    resample_through_transform,
    resample_to_template,
    resample_to_zoom,
)

__all__ = [
    "CheckImage",
    "CoregisterToReference",
    "RegisterToTemplate",
    "ResampleThroughTransform",
    "ResampleToTemplate",
    "ResampleToZoom",
]


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


class _ResampleInputSpec(ImageInputSpec):
    zoom = traits.Float(2.0, usedefault=True, desc="isotropic voxel size, mm")


class ResampleToZoom(SimpleInterface):
    """Reorient to RAS+ and resample to isotropic voxels, anti-aliased."""

    input_spec = _ResampleInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
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

    input_spec = ImageInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        result = register_to_template(nb.load(self.inputs.in_file), runtime.cwd)
        out_file = Path(runtime.cwd) / "registered.nii.gz"
        nb.save(result.registered, out_file)
        self._results.update(
            out_file=str(out_file),
            out_transform=str(result.transform),
        )
        return runtime


class _ResampleThroughTransformInputSpec(ImageInputSpec):
    transform = File(exists=True, mandatory=True, desc="the image's template transform")
    resolution = traits.Enum(1, 2, usedefault=True, desc="voxel size of the head box, mm")


class ResampleThroughTransform(SimpleInterface):
    """Resample the checked source image onto the head box through its template transform,
    from its native resolution (the artefact network's 1 mm input)."""

    input_spec = _ResampleThroughTransformInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        resampled = resample_through_transform(
            load_anatomical(self.inputs.in_file), self.inputs.transform, self.inputs.resolution
        )
        out_file = Path(runtime.cwd) / f"res-{self.inputs.resolution}.nii"  # fast: no gzip
        nb.save(resampled, out_file)
        self._results["out_file"] = str(out_file)
        return runtime


class ResampleToTemplate(SimpleInterface):
    """Resample an image already in MNI space onto the 2 mm template head box (no registration)."""

    input_spec = ImageInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        out_file = Path(runtime.cwd) / "registered.nii.gz"
        nb.save(resample_to_template(load_anatomical(self.inputs.in_file)), out_file)
        self._results["out_file"] = str(out_file)
        return runtime


class _CoregisterInputSpec(ImageInputSpec):
    reference = File(exists=True, mandatory=True, desc="the T1w, resampled like in_file")
    reference_transform = File(exists=True, mandatory=True, desc="the T1w's template transform")


class CoregisterToReference(SimpleInterface):
    """Rigid FLAIR-to-T1w registration, resampled onto the template through the T1w's transform."""

    input_spec = _CoregisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        registered, transform = coregister_to_reference(
            nb.load(self.inputs.in_file),
            nb.load(self.inputs.reference),
            self.inputs.reference_transform,
            runtime.cwd,
        )
        out_file = Path(runtime.cwd) / "coregistered.nii.gz"
        nb.save(registered, out_file)
        self._results.update(out_file=str(out_file), out_transform=str(transform))
        return runtime
