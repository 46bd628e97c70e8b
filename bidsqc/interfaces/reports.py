"""nipype interface for the report figures (:mod:`bidsqc.reports.figures`)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
from nipype.interfaces.base import File, SimpleInterface, isdefined, traits

from bidsqc.data import load_template
from bidsqc.interfaces import ImageInputSpec, ImageOutputSpec
from bidsqc.preprocessing import reorient_to_ras

__all__ = ["PlotMosaic", "PlotMotion"]


class _PlotMosaicInputSpec(ImageInputSpec):
    template_outline = traits.Bool(False, usedefault=True, desc="outline the template brain")
    edges_of = File(exists=True, desc="draw the white-matter edges of this registered T1w instead")
    artefact_map = File(
        exists=True, desc="outline the tiles of this map (ArtefactQC) flagged for an artefact"
    )


class PlotMosaic(SimpleInterface):
    """Three-plane mosaic of an image, in RAS+, optionally with the template brain outline, the
    edges of another image on the same grid (a FLAIR with its T1w's), or the outline of the
    tiles where an artefact's probability crosses its default review threshold, named in the
    title."""

    input_spec = _PlotMosaicInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.reports.figures import edge_mask, plot_mosaic

        img = reorient_to_ras(nb.load(self.inputs.in_file))
        outline, title = None, None
        if isdefined(self.inputs.artefact_map):
            outline, title = _flagged_tiles(nb.load(self.inputs.artefact_map))
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


def _flagged_tiles(artefact_map: nb.Nifti1Image) -> tuple[nb.Nifti1Image, str]:
    """The voxels whose tiles cross the default review threshold of some artefact, and a title
    that names those artefacts. The image's probability is a weighted mean of its tiles' logits,
    so an image flagged for an artefact always has a tile flagged for it."""
    from bidsqc.decisions import DEFAULT_THRESHOLDS, flagged_artefacts
    from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS

    columns = list(ARTEFACT_PROBABILITY_COLUMNS.values())
    probabilities = np.nan_to_num(np.asarray(artefact_map.dataobj, dtype=np.float32))
    highest = probabilities.max(axis=(0, 1, 2))
    names = flagged_artefacts(dict(zip(columns, highest, strict=True)))
    title = f"Outlined: tiles flagged for {', '.join(names)}" if names else "No tile flagged"
    review = np.array([DEFAULT_THRESHOLDS[column].review for column in columns])
    flagged = (probabilities >= review).any(axis=-1)
    return nb.Nifti1Image(flagged.astype(np.uint8), artefact_map.affine), title


class PlotMotion(SimpleInterface):
    """The motion network's distribution over motion in mm (``in_file``: its ``motion.json``)."""

    input_spec = ImageInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.reports.figures import plot_motion_prediction

        prediction = json.loads(Path(self.inputs.in_file).read_text())
        out_file = plot_motion_prediction(prediction, Path(runtime.cwd) / "motion.png")
        self._results["out_file"] = str(out_file)
        return runtime
