"""nipype interface for the classical measures (:mod:`bidsqc.measures`)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
from nipype.interfaces.base import File, isdefined

from bidsqc.data import load_template
from bidsqc.interfaces import ImageInputSpec, ImageOutputSpec, QCInterface

__all__ = ["ComputeMeasures"]


class _MeasuresInputSpec(ImageInputSpec):
    brain_mask = File(exists=True, mandatory=True, desc="the image's brain on the template grid")
    fine = File(exists=True, desc="the checked image resampled onto the 1 mm head box")
    source = File(exists=True, desc="the checked image, for its field of view")
    transform = File(exists=True, desc="its template transform, for its field of view")


class ComputeMeasures(QCInterface):
    """Estimate the bias field (N4) and the residual misregistration, then compute every
    classical measure; ``snr_wm_local`` on ``fine``, the source image on the 1 mm head box
    (:class:`~bidsqc.interfaces.preprocessing.ResampleThroughTransform`), and
    ``brain_coverage`` from the header of ``source`` and its ``transform``; each n/a without
    them."""

    input_spec = _MeasuresInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        from bidsqc.measures.iqms import compute_iqms
        from bidsqc.preprocessing import (
            estimate_bias_field,
            field_of_view,
            residual_misregistration,
        )

        template = load_template(2)
        image = nb.load(self.inputs.in_file).get_fdata(dtype=np.float32)
        brain = np.asanyarray(nb.load(self.inputs.brain_mask).dataobj) > 0
        field = estimate_bias_field(image, template.brain_mask, template.zooms)
        residual = residual_misregistration(image, brain, template)
        fine = None
        if isdefined(self.inputs.fine):
            fine = nb.load(self.inputs.fine).get_fdata(dtype=np.float32)
        covered = None
        if isdefined(self.inputs.source) and isdefined(self.inputs.transform):
            covered = field_of_view(nb.load(self.inputs.source), self.inputs.transform)
        measures = compute_iqms(
            image,
            template=template,
            bias_field=field,
            residual=residual,
            fine=fine,
            field_of_view=covered,
        )
        out_file = Path(runtime.cwd) / "measures.json"
        out_file.write_text(json.dumps(measures, indent=2, allow_nan=True) + "\n")
        self._results["out_file"] = str(out_file)
        return runtime
