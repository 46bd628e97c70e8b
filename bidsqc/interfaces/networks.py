"""nipype interfaces for the bundled networks (:mod:`bidsqc.inference`)."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import File, SimpleInterface, traits

from bidsqc.interfaces import ImageOutputSpec, ThreadedImageInputSpec

__all__ = ["MotionQC"]


class _NetworkInputSpec(ThreadedImageInputSpec):
    # An input, so that new weights (a package update, fine-tuned ones) invalidate the cache.
    weights = File(exists=True, mandatory=True, desc="weights (.pt), model card beside them")
    device = traits.Enum(
        "auto", "cpu", "cuda", usedefault=True, nohash=True, desc="where the network runs"
    )


class MotionQC(SimpleInterface):
    """Grade the motion of a preprocessed image with a motion network (the bundled one).

    Writes ``motion.json``: the QC columns of :class:`bidsqc.inference.MotionPrediction` and
    the predicted distribution over motion in mm.
    """

    input_spec = _NetworkInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        import torch

        from bidsqc.inference import load_network, load_preprocessed, predict_motion

        torch.set_num_threads(self.inputs.num_threads)
        network = load_network(self.inputs.weights, self.inputs.device)
        (prediction,) = predict_motion(network, [load_preprocessed(self.inputs.in_file)])
        out_file = Path(runtime.cwd) / "motion.json"
        out_file.write_text(json.dumps(prediction.to_dict(), indent=2) + "\n")
        self._results["out_file"] = str(out_file)
        return runtime
