"""nipype interface for the classical measures (:mod:`bidsqc.metrics`)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bidsqc.data import load_template
from bidsqc.metrics import compute_iqms
from bidsqc.preprocessing import estimate_bias_field, set_ants_threads

__all__ = ["ComputeMeasures"]


class _ComputeMeasuresInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image on the 2 mm template head box")
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _ComputeMeasuresOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="JSON object of measure name to value")


class ComputeMeasures(SimpleInterface):
    """Estimate the bias field (N4), then compute every classical measure."""

    input_spec = _ComputeMeasuresInputSpec
    output_spec = _ComputeMeasuresOutputSpec

    def _run_interface(self, runtime):
        set_ants_threads(self.inputs.num_threads)
        template = load_template(2)
        image = nb.load(self.inputs.in_file).get_fdata(dtype=np.float32)
        field = estimate_bias_field(image, template.brain_mask, template.zooms)
        measures = compute_iqms(image, template=template, bias_field=field)
        out_file = Path(runtime.cwd) / "measures.json"
        out_file.write_text(json.dumps(measures, indent=2, allow_nan=True) + "\n")
        self._results["out_file"] = str(out_file)
        return runtime
