"""nipype interface for the report figures (:mod:`bidsqc.reports.figures`)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
from nipype.interfaces.base import File, isdefined, traits

from bidsqc.data import load_template
from bidsqc.interfaces import ImageInputSpec, ImageOutputSpec, QCInterface

__all__ = ["PlotMosaic", "PlotMotion"]


class _PlotMosaicInputSpec(ImageInputSpec):
    template_outline = traits.Bool(False, usedefault=True, desc="outline the template brain")
    edges_of = File(exists=True, desc="draw the white-matter edges of this registered T1w instead")
    artefact_map = File(
        exists=True, desc="outline the tiles of this map (ArtefactQC) flagged for an artefact"
    )


class PlotMosaic(QCInterface):
    """Three-plane mosaic of an image, in RAS+, optionally with the template brain outline, the
    edges of another image on the same grid (a FLAIR with its T1w's), or the outline of the
    tiles where an artefact's probability crosses its default review threshold, named in the
    title."""

    input_spec = _PlotMosaicInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.preprocessing import reorient_to_ras
        from bidsqc.reports.figures import edge_mask, flagged_tiles, plot_mosaic

        img = reorient_to_ras(nb.load(self.inputs.in_file))
        outline, title = None, None
        if isdefined(self.inputs.artefact_map):
            outline, title = flagged_tiles(nb.load(self.inputs.artefact_map))
        elif isdefined(self.inputs.edges_of):
            other = nb.load(self.inputs.edges_of)  # a registered T1w, on the template grid
            edges = edge_mask(other.get_fdata(), load_template(2).brain_mask)
            outline = nb.Nifti1Image(edges.astype("uint8"), other.affine)
        elif self.inputs.template_outline:
            template = load_template(2)
            outline = nb.Nifti1Image(template.brain_mask.astype("uint8"), template.affine)
        out_file = Path(runtime.cwd) / "mosaic.png"
        plot_mosaic(img, out_file, outline=outline, title=title)
        self._results["out_file"] = str(out_file)
        return runtime


class PlotMotion(QCInterface):
    """The motion network's distribution over motion in mm (``in_file``: its ``motion.json``)."""

    input_spec = ImageInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.reports.figures import plot_motion_prediction

        prediction = json.loads(Path(self.inputs.in_file).read_text())
        out_file = plot_motion_prediction(prediction, Path(runtime.cwd) / "motion.png")
        self._results["out_file"] = str(out_file)
        return runtime
