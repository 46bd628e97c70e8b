"""The QC workflows of one anatomical image, and of a FLAIR's co-registration to its T1w."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bidsqc.data import template_path
from bidsqc.discovery import AnatImage
from bidsqc.interfaces.measures import ComputeMeasures
from bidsqc.interfaces.networks import ArtefactQC, MotionQC, RegistrationQC, SiteQualityQC
from bidsqc.interfaces.preprocessing import (
    CheckImage,
    CoregisterToReference,
    RegisterToTemplate,
    ResampleThroughTransform,
    ResampleToTemplate,
    ResampleToZoom,
)
from bidsqc.interfaces.reports import PlotMosaic, PlotMotion
from bidsqc.workflows.outputs import (
    init_ds_anat_qc_wf,
    init_ds_coregistration_wf,
    init_ds_derivative_qc_wf,
)
from bidsqc.workflows.settings import QCSettings

__all__ = ["file_stamp", "init_anat_qc_wf", "init_derivative_qc_wf", "init_flair_coreg_wf"]


def file_stamp(path: Path) -> str:
    """Size and modification time of ``path`` (or of a dangling link), to key the cache."""
    stat = path.lstat() if not path.exists() else path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def init_anat_qc_wf(
    *, image: AnatImage, settings: QCSettings, name: str = "anat_qc_wf"
) -> pe.Workflow:
    """Check, preprocess, measure, grade and write one T1w or FLAIR image.

    Workflow Graph
        inputnode -> check_image -> resample -> register -> measures (with check_image, for
        ``brain_coverage``), and check_image + register (transform) -> resample_fine (the 1 mm head
        box) -> measures (``snr_wm_local``) and artefact_qc -> plot_artefacts; register -> motion_qc
        -> plot_motion, register -> registration_qc (against the template); plot_raw (from the
        checked image), plot_registered; with a site-quality network (``--models-dir``), register ->
        site_quality; every output goes to ``ds_anat_qc_wf``
        (:func:`~bidsqc.workflows.outputs.init_ds_anat_qc_wf`).
        With ``settings.batch_networks`` (``--device cuda``), the network nodes and their
        figures are left out: :mod:`bidsqc.inference.batched` runs them after the graph.

    Inputs (``inputnode``)
        in_file, sidecar, stamp
            The image, its JSON sidecar (empty if none) and :func:`file_stamp`, set from
            ``image``.

    Outputs (``outputnode``)
        resampled
            The image reoriented to RAS and resampled to 2 mm.
        registered, transform
            The image on the 2 mm template head box, and its affine transform.

    A bad image makes ``check_image`` raise with a clear message. nipype then skips the rest
    of this branch only, and the failure becomes the image's row in the QC table.
    """
    workflow = pe.Workflow(name=name)
    inputnode = _image_inputnode(image)
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["resampled", "registered", "transform"]), name="outputnode"
    )
    check_image = pe.Node(CheckImage(), name="check_image")
    resample = pe.Node(ResampleToZoom(zoom=2.0), name="resample", mem_gb=1.0)
    register = pe.Node(RegisterToTemplate(), name="register", mem_gb=0.5)
    resample_fine = pe.Node(ResampleThroughTransform(), name="resample_fine", mem_gb=1.0)
    measures = _measures_node()
    plot_raw = pe.Node(PlotMosaic(), name="plot_raw", mem_gb=1.0)
    plot_registered = pe.Node(PlotMosaic(template_outline=True), name="plot_registered")
    ds_anat_qc_wf = init_ds_anat_qc_wf(
        image=image,
        output_dir=settings.output_dir,
        site_quality=settings.site_quality,
        networks=not settings.batch_networks,
    )

    workflow.connect([
        (inputnode, check_image, [("in_file", "in_file"),
                                  ("sidecar", "sidecar"),
                                  ("stamp", "stamp")]),
        (check_image, resample, [("out_file", "in_file")]),
        (resample, register, [("out_file", "in_file")]),
        (check_image, resample_fine, [("out_file", "in_file")]),
        (register, resample_fine, [("out_transform", "transform")]),
        (check_image, measures, [("out_file", "source")]),
        (register, measures, [("out_file", "in_file"),
                              ("brain_mask", "brain_mask"),
                              ("out_transform", "transform")]),
        (resample_fine, measures, [("out_file", "fine")]),
    ])  # fmt: skip
    if not settings.batch_networks:
        _connect_networks(workflow, settings, resample_fine, register, ds_anat_qc_wf)
    workflow.connect([
        (check_image, plot_raw, [("out_file", "in_file")]),
        (register, plot_registered, [("out_file", "in_file")]),
        (resample, outputnode, [("out_file", "resampled")]),
        (register, outputnode, [("out_file", "registered"),
                                ("out_transform", "transform")]),
        (register, ds_anat_qc_wf, [("out_file", "inputnode.preproc"),
                                   ("out_transform", "inputnode.transform")]),
        (check_image, ds_anat_qc_wf, [("geometry", "inputnode.geometry")]),
        (plot_raw, ds_anat_qc_wf, [("out_file", "inputnode.raw_figure")]),
        (plot_registered, ds_anat_qc_wf, [("out_file", "inputnode.registered_figure")]),
        (measures, ds_anat_qc_wf, [("out_file", "inputnode.measures")]),
    ])  # fmt: skip
    return workflow


def _connect_networks(
    workflow: pe.Workflow,
    settings: QCSettings,
    resample_fine: pe.Node,
    register: pe.Node,
    ds_anat_qc_wf: pe.Workflow,
) -> None:
    """A node per network on the registered image (the artefact network on the 1 mm head box),
    their figures, and their derivatives.

    MultiProc starts the nodes that are ready in the order they are connected: after the
    registration, the 1 mm resampling comes first, since the measures and the artefact network,
    the longest of what follows, wait for it.
    """
    artefact_qc = settings.network_node(ArtefactQC, "artefact", "artefact_qc", mem_gb=2.0)
    motion_qc = settings.network_node(MotionQC, "motion", "motion_qc", mem_gb=1.0)
    registration_qc = _registration_qc_node(settings)
    plot_motion = pe.Node(PlotMotion(), name="plot_motion")
    plot_artefacts = pe.Node(PlotMosaic(), name="plot_artefacts")
    workflow.connect([
        (resample_fine, artefact_qc, [("out_file", "in_file")]),
        (register, motion_qc, [("out_file", "in_file")]),
        (register, registration_qc, [("out_file", "in_file")]),
        (motion_qc, plot_motion, [("out_file", "in_file")]),
        (register, plot_artefacts, [("out_file", "in_file")]),
        (artefact_qc, plot_artefacts, [("out_map", "artefact_map")]),
        (motion_qc, ds_anat_qc_wf, [("out_file", "inputnode.motion")]),
        (plot_motion, ds_anat_qc_wf, [("out_file", "inputnode.motion_figure")]),
        (registration_qc, ds_anat_qc_wf, [("out_file", "inputnode.registration")]),
        (artefact_qc, ds_anat_qc_wf, [("out_file", "inputnode.artefacts"),
                                      ("out_map", "inputnode.artefact_map")]),
        (plot_artefacts, ds_anat_qc_wf, [("out_file", "inputnode.artefacts_figure")]),
    ])  # fmt: skip
    if settings.site_quality:
        site_quality = settings.network_node(SiteQualityQC, "quality", "site_quality", mem_gb=1.0)
        workflow.connect([
            (register, site_quality, [("out_file", "in_file")]),
            (site_quality, ds_anat_qc_wf, [("out_file", "inputnode.site_quality")]),
        ])  # fmt: skip


def init_flair_coreg_wf(
    *, flair: AnatImage, settings: QCSettings, name: str = "flair_coreg_wf"
) -> pe.Workflow:
    """Co-register a FLAIR rigidly to the T1w of its session, and QC that co-registration.

    The FLAIR reaches the template through the T1w's transform, so that on the template grid it
    should lie exactly on the registered T1w; the registration-QC network judges the pair.

    Workflow Graph
        inputnode -> coregister -> registration_qc -> ds_coregistration_wf, and
        coregister -> plot_coregistration (the FLAIR with the T1w's edges) ->
        ds_coregistration_wf (:func:`~bidsqc.workflows.outputs.init_ds_coregistration_wf`).

    Inputs (``inputnode``)
        flair_resampled, t1w_resampled
            Both images reoriented and resampled to 2 mm (``resampled`` of their workflows).
        t1w_registered, t1w_transform
            The T1w on the template grid, and its transform.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        niu.IdentityInterface(
            fields=["flair_resampled", "t1w_resampled", "t1w_registered", "t1w_transform"]
        ),
        name="inputnode",
    )
    coregister = pe.Node(CoregisterToReference(), name="coregister", mem_gb=0.5)
    registration_qc = _registration_qc_node(settings)
    registration_qc.inputs.column_suffix = "_to_t1w"
    plot_coregistration = pe.Node(PlotMosaic(), name="plot_coregistration")
    ds_coregistration_wf = init_ds_coregistration_wf(flair=flair, output_dir=settings.output_dir)
    workflow.connect([
        (inputnode, coregister, [("flair_resampled", "in_file"),
                                 ("t1w_resampled", "reference"),
                                 ("t1w_transform", "reference_transform")]),
        (inputnode, registration_qc, [("t1w_registered", "reference")]),
        (inputnode, plot_coregistration, [("t1w_registered", "edges_of")]),
        (coregister, registration_qc, [("out_file", "in_file")]),
        (coregister, plot_coregistration, [("out_file", "in_file")]),
        (coregister, ds_coregistration_wf, [("out_transform", "inputnode.transform")]),
        (plot_coregistration, ds_coregistration_wf, [("out_file", "inputnode.figure")]),
        (registration_qc, ds_coregistration_wf, [("out_file", "inputnode.coregistration")]),
    ])  # fmt: skip
    return workflow


def init_derivative_qc_wf(
    *, image: AnatImage, settings: QCSettings, name: str = "derivative_qc_wf"
) -> pe.Workflow:
    """QC the template registration of an image preprocessed by another pipeline (fMRIPrep).

    Workflow Graph
        inputnode -> check_image -> resample_to_template -> registration_qc, measures and
        plot_registered -> ds_derivative_qc_wf
        (:func:`~bidsqc.workflows.outputs.init_ds_derivative_qc_wf`).

    Inputs (``inputnode``) are those of :func:`init_anat_qc_wf`. The image is already in MNI
    space (:data:`bidsqc.discovery.DERIVATIVE_SPACES`): it is only resampled onto the template
    grid, never registered again, so a bad normalisation stays visible to the network and to
    ``rereg_mm`` among the measures.
    """
    workflow = pe.Workflow(name=name)
    inputnode = _image_inputnode(image)
    check_image = pe.Node(CheckImage(), name="check_image")
    resample = pe.Node(ResampleToTemplate(), name="resample_to_template", mem_gb=1.0)
    registration_qc = _registration_qc_node(settings)
    measures = _measures_node()
    plot_registered = pe.Node(PlotMosaic(template_outline=True), name="plot_registered")
    ds_derivative_qc_wf = init_ds_derivative_qc_wf(image=image, output_dir=settings.output_dir)
    workflow.connect([
        (inputnode, check_image, [("in_file", "in_file"),
                                  ("sidecar", "sidecar"),
                                  ("stamp", "stamp")]),
        (check_image, resample, [("out_file", "in_file")]),
        (resample, registration_qc, [("out_file", "in_file")]),
        (resample, measures, [("out_file", "in_file"), ("brain_mask", "brain_mask")]),
        (resample, plot_registered, [("out_file", "in_file")]),
        (check_image, ds_derivative_qc_wf, [("geometry", "inputnode.geometry")]),
        (plot_registered, ds_derivative_qc_wf, [("out_file", "inputnode.registered_figure")]),
        (registration_qc, ds_derivative_qc_wf, [("out_file", "inputnode.registration")]),
        (measures, ds_derivative_qc_wf, [("out_file", "inputnode.measures")]),
    ])  # fmt: skip
    return workflow


def _image_inputnode(image: AnatImage) -> pe.Node:
    inputnode = pe.Node(
        niu.IdentityInterface(fields=["in_file", "sidecar", "stamp"]), name="inputnode"
    )
    inputnode.inputs.in_file = str(image.path)
    inputnode.inputs.sidecar = str(image.sidecar or "")
    inputnode.inputs.stamp = file_stamp(image.path)
    return inputnode


def _registration_qc_node(settings: QCSettings) -> pe.Node:
    """The registration-QC network; the template is the reference unless one is connected."""
    node = settings.network_node(RegistrationQC, "registration", "registration_qc", mem_gb=1.0)
    node.inputs.reference = str(template_path(2, "T1w"))
    return node


def _measures_node() -> pe.Node:
    """The classical measures, N4 and the re-registration included (ANTs: one thread)."""
    return pe.Node(ComputeMeasures(), name="measures", mem_gb=0.5)
