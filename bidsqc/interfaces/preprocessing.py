"""nipype interfaces over loading (:mod:`bidsqc.loading`) and :mod:`bidsqc.preprocessing`.

ANTs and torch are imported when a node runs, so that building the graph stays quick.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    TraitedSpec,
    traits,
)

from bidsqc.interfaces import ImageInputSpec, ImageOutputSpec, QCInterface
from bidsqc.loading import acquisition_geometry, check_sidecar, load_anatomical

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
    geometry = File(exists=True, desc="JSON: its acquisition geometry, read from its voxels too")


class CheckImage(QCInterface):
    """Load an image and its sidecar, and fail with a clear message if they cannot be QC'd;
    then record the geometry it was acquired with (:func:`acquisition_geometry`)."""

    input_spec = _CheckImageInputSpec
    output_spec = _CheckImageOutputSpec

    def _run_interface(self, runtime):
        if self.inputs.sidecar:
            check_sidecar(self.inputs.sidecar)
        img = load_anatomical(self.inputs.in_file)
        geometry = acquisition_geometry(
            self.inputs.in_file, self.inputs.sidecar or None, np.asanyarray(img.dataobj)
        )
        geometry_file = Path(runtime.cwd) / "geometry.json"
        geometry_file.write_text(json.dumps(geometry, indent=2) + "\n")
        self._results["out_file"] = self.inputs.in_file
        self._results["geometry"] = str(geometry_file)
        return runtime


class _ResampleInputSpec(ImageInputSpec):
    zoom = traits.Float(2.0, usedefault=True, desc="isotropic voxel size, mm")


class ResampleToZoom(QCInterface):
    """Reorient to RAS+ and resample to isotropic voxels, anti-aliased."""

    input_spec = _ResampleInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.preprocessing import reorient_to_ras, resample_to_zoom

        img = reorient_to_ras(load_anatomical(self.inputs.in_file))
        img = resample_to_zoom(img, self.inputs.zoom)
        # Uncompressed: only the next nodes read it, and gzip would add 0.16 s on a 1 mm head.
        out_file = Path(runtime.cwd) / "resampled.nii"
        nb.save(img, out_file)
        self._results["out_file"] = str(out_file)
        return runtime


class _RegisterOutputSpec(ImageOutputSpec):
    out_transform = File(exists=True, desc="ITK affine, image to template")


class _TemplateSpaceOutputSpec(ImageOutputSpec):
    brain_mask = File(exists=True, desc="the image's extracted brain on the template grid")


class _RegisterToTemplateOutputSpec(_RegisterOutputSpec, _TemplateSpaceOutputSpec):
    pass


class RegisterToTemplate(QCInterface):
    """Brain extraction and affine registration to the bundled template, resampled onto its
    2 mm head box."""

    input_spec = ImageInputSpec
    output_spec = _RegisterToTemplateOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.preprocessing import register_to_template

        result = register_to_template(nb.load(self.inputs.in_file), runtime.cwd)
        self._results.update(
            _save_in_template_space(runtime.cwd, result.registered, result.brain_mask),
            out_transform=str(result.transform),
        )
        return runtime


def _save_in_template_space(
    cwd: str, registered: nb.Nifti1Image, brain_mask: nb.Nifti1Image
) -> dict[str, str]:
    """Write an image on the template grid and its brain mask; their output fields."""
    out_file, mask_file = Path(cwd) / "registered.nii.gz", Path(cwd) / "brain_mask.nii.gz"
    nb.save(registered, out_file)
    nb.save(nb.Nifti1Image(brain_mask.get_fdata().astype(np.uint8), brain_mask.affine), mask_file)
    return {"out_file": str(out_file), "brain_mask": str(mask_file)}


class _ResampleThroughTransformInputSpec(ImageInputSpec):
    transform = File(exists=True, mandatory=True, desc="in_file's template transform (ITK)")
    resolution = traits.Int(1, usedefault=True, desc="voxel size of the head box, mm")


class ResampleThroughTransform(QCInterface):
    """Resample the checked source image from its native grid onto the head box through its
    template transform (:func:`bidsqc.preprocessing.resample_through_transform`): the 1 mm
    image that the artefact network and ``snr_wm_local`` both read."""

    input_spec = _ResampleThroughTransformInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.preprocessing import resample_through_transform

        img = resample_through_transform(
            load_anatomical(self.inputs.in_file), self.inputs.transform, self.inputs.resolution
        )
        # Uncompressed, as resampled.nii: gzip would take 0.7 s on the 1 mm head box.
        out_file = Path(runtime.cwd) / f"headbox_res-{self.inputs.resolution}.nii"
        nb.save(img, out_file)
        self._results["out_file"] = str(out_file)
        return runtime


class ResampleToTemplate(QCInterface):
    """Resample an image already in MNI space onto the 2 mm template head box (no registration),
    and extract its brain there."""

    input_spec = ImageInputSpec
    output_spec = _TemplateSpaceOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.brain_extraction import extract_brain
        from bidsqc.preprocessing import resample_to_template

        resampled = resample_to_template(load_anatomical(self.inputs.in_file))
        mask = nb.Nifti1Image(extract_brain(resampled).astype(np.float32), resampled.affine)
        self._results.update(_save_in_template_space(runtime.cwd, resampled, mask))
        return runtime


class _CoregisterInputSpec(ImageInputSpec):
    reference = File(exists=True, mandatory=True, desc="the T1w, resampled like in_file")
    reference_transform = File(exists=True, mandatory=True, desc="the T1w's template transform")


class CoregisterToReference(QCInterface):
    """Rigid FLAIR-to-T1w registration, resampled onto the template through the T1w's transform."""

    input_spec = _CoregisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.preprocessing import coregister_to_reference

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
