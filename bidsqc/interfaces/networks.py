"""nipype interfaces for the bundled networks (:mod:`bidsqc.inference`)."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import File, traits

from bidsqc.interfaces import ImageInputSpec, ImageOutputSpec, QCInterface

__all__ = ["ArtefactQC", "MotionQC", "RegistrationQC", "SiteQualityQC"]


class _NetworkInputSpec(ImageInputSpec):
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="threads for PyTorch")
    # An input, so that new weights (a package update, fine-tuned ones) invalidate the cache.
    weights = File(exists=True, mandatory=True, desc="weights (.pt), model card beside them")
    device = traits.Enum(
        "auto", "cpu", "cuda", usedefault=True, nohash=True, desc="where the network runs"
    )


class _OneImageQC(QCInterface):
    """A network on one preprocessed image; writes its prediction as ``<_name>.json``, with the
    model that made it."""

    input_spec = _NetworkInputSpec
    output_spec = ImageOutputSpec
    _name: str

    def _predict(self, network, volume) -> dict:
        raise NotImplementedError

    def _run_interface(self, runtime):
        import torch

        from bidsqc.inference.inputs import load_preprocessed
        from bidsqc.inference.models import load_network, write_prediction

        torch.set_num_threads(self.inputs.num_threads)
        network = load_network(self.inputs.weights, self.inputs.device)
        result = self._predict(network, load_preprocessed(self.inputs.in_file))
        self._results["out_file"] = write_prediction(
            Path(runtime.cwd) / f"{self._name}.json", result, self.inputs.weights
        )
        return runtime


class MotionQC(_OneImageQC):
    """Grade the motion of a preprocessed image with a motion network (the bundled one).

    Writes ``motion.json``: the QC columns of :class:`bidsqc.inference.motion.MotionPrediction` and
    the predicted distribution over motion in mm.
    """

    _name = "motion"

    def _predict(self, network, volume) -> dict:
        from bidsqc.inference.motion import predict_motion

        (prediction,) = predict_motion(network, [volume])
        return prediction.to_dict()


class SiteQualityQC(_OneImageQC):
    """Rate a preprocessed image as the site's raters would, with a site-quality network
    (``bidsqc-finetune --task quality``). Writes ``sitequality.json``: the columns of
    :class:`bidsqc.inference.site_quality.SiteQualityPrediction`."""

    _name = "sitequality"

    def _predict(self, network, volume) -> dict:
        from bidsqc.inference.site_quality import predict_site_quality

        (prediction,) = predict_site_quality(network, [volume])
        return prediction.columns()


class _RegistrationQCInputSpec(_NetworkInputSpec):
    reference = File(exists=True, mandatory=True, desc="what in_file should be aligned with")
    column_suffix = traits.Str(
        "", usedefault=True, desc="names the reference in the columns, e.g. '_to_t1w'"
    )


class RegistrationQC(QCInterface):
    """Judge whether a preprocessed image is aligned with a reference on the same grid (the
    template, or the T1w of a FLAIR's session) with a registration-QC network.

    Writes ``registration.json``: the columns of
    :class:`bidsqc.inference.registration.RegistrationPrediction` and its distribution over the
    error in mm."""

    input_spec = _RegistrationQCInputSpec
    output_spec = ImageOutputSpec

    def _run_interface(self, runtime):
        import torch

        from bidsqc.inference.inputs import load_preprocessed
        from bidsqc.inference.models import load_network, write_prediction
        from bidsqc.inference.registration import predict_registration

        torch.set_num_threads(self.inputs.num_threads)
        network = load_network(self.inputs.weights, self.inputs.device)
        pair = (load_preprocessed(self.inputs.in_file), load_preprocessed(self.inputs.reference))
        (prediction,) = predict_registration(network, [pair])
        self._results["out_file"] = write_prediction(
            Path(runtime.cwd) / "registration.json",
            prediction.to_dict(self.inputs.column_suffix),
            self.inputs.weights,
        )
        return runtime


class _ArtefactQCOutputSpec(ImageOutputSpec):
    out_map = File(exists=True, desc="tile probabilities, 4D, on the 2 mm head box")


class ArtefactQC(QCInterface):
    """Detect artefacts, tile by tile, with an artefact network, in the checked source image
    resampled from its native grid onto the 1 mm head box
    (:class:`~bidsqc.interfaces.preprocessing.ResampleThroughTransform`).

    Writes ``artefacts.json`` (the columns of :class:`bidsqc.inference.artefacts.ArtefactPrediction`
    and every tile's answers) and ``artefactmap.nii.gz``: each tile's artefact probabilities spread
    over the voxels it covers, one volume per artefact, on the 2 mm head box of the preproc image
    (tile edges rounded to 2 mm), NaN where no tile holding brain reaches."""

    input_spec = _NetworkInputSpec
    output_spec = _ArtefactQCOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nb
        import torch

        from bidsqc.inference.artefacts import predict_artefacts
        from bidsqc.inference.inputs import load_preprocessed
        from bidsqc.inference.models import load_network, write_prediction

        torch.set_num_threads(self.inputs.num_threads)
        network = load_network(self.inputs.weights, self.inputs.device)
        prediction = predict_artefacts(network, load_preprocessed(self.inputs.in_file))
        out_file = write_prediction(
            Path(runtime.cwd) / "artefacts.json", prediction.to_dict(), self.inputs.weights
        )
        out_map = Path(runtime.cwd) / "artefactmap.nii.gz"
        nb.save(prediction.probability_map(), out_map)
        self._results.update(out_file=out_file, out_map=str(out_map))
        return runtime
