"""The QC branch of one anatomical image."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bidsqc import outputs
from bidsqc.bids import AnatImage
from bidsqc.data import MODELS_DIR, TEMPLATE_NAME, template_path
from bidsqc.interfaces.bids import WriteDerivatives
from bidsqc.interfaces.measures import ComputeMeasures
from bidsqc.interfaces.networks import ArtefactQC, MotionQC, RegistrationQC
from bidsqc.interfaces.preprocessing import (
    CheckImage,
    CoregisterToReference,
    RegisterToTemplate,
    ResampleThroughTransform,
    ResampleToTemplate,
    ResampleToZoom,
)
from bidsqc.interfaces.reports import PlotMosaic, PlotMotion
from bidsqc.outputs import ARTEFACT_PROBABILITY_COLUMNS

__all__ = ["file_stamp", "init_anat_qc_wf", "init_derivative_qc_wf", "init_flair_coreg_wf"]


def file_stamp(path: Path) -> str:
    """Size and modification time of ``path`` (or of a dangling link), to key the cache."""
    stat = path.lstat() if not path.exists() else path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _check_image_node(image: AnatImage) -> pe.Node:
    return pe.Node(
        CheckImage(
            in_file=str(image.path),
            sidecar=str(image.sidecar or ""),
            stamp=file_stamp(image.path),
        ),
        name="check_image",
    )


def _registration_qc_node(omp_nthreads: int, device: str, name: str = "registration_qc") -> pe.Node:
    """The registration-QC network; the template is the reference unless one is connected."""
    return pe.Node(
        RegistrationQC(
            weights=str(MODELS_DIR / "registration.pt"),
            reference=str(template_path(2, "T1w")),
            num_threads=omp_nthreads,
            device=device,
        ),
        name=name,
        n_procs=omp_nthreads,
        mem_gb=1.0,
    )


def _measures_node() -> pe.Node:
    """The classical measures, N4 and the re-registration included (ANTs: one thread)."""
    return pe.Node(ComputeMeasures(), name="measures", mem_gb=0.5)


def _write_derivatives(
    workflow: pe.Workflow,
    derivatives: list[tuple[pe.Node, str, Path]],
    sidecars: dict | None = None,
) -> None:
    """Gather each ``(node, output, destination)`` and copy them all in one ``ds_derivatives``
    node, in the listed order: put last the file whose presence means the branch finished."""
    gather = pe.Node(niu.Merge(len(derivatives)), name="gather", run_without_submitting=True)
    ds_derivatives = pe.Node(
        WriteDerivatives(
            out_paths=[str(destination) for _, _, destination in derivatives],
            sidecars=sidecars or {},
        ),
        name="ds_derivatives",
        run_without_submitting=True,
    )
    for index, (node, output, _) in enumerate(derivatives, start=1):
        workflow.connect(node, output, gather, f"in{index}")
    workflow.connect(gather, "out", ds_derivatives, "in_files")


def init_anat_qc_wf(
    *,
    image: AnatImage,
    output_dir: Path,
    omp_nthreads: int,
    device: str = "auto",
    name: str = "anat_qc_wf",
) -> pe.Workflow:
    """Check, preprocess, measure, grade and write one T1w or FLAIR image.

    Workflow Graph
        check_image -> resample -> register -> measures -> ds_derivatives, and
        register -> motion_qc -> plot_motion, register -> registration_qc (against the
        template), check_image + register (transform) -> resample_fine (1 mm) -> artefact_qc
        -> plot_artefacts; plot_raw (from the checked image), plot_registered and the network
        outputs also feed ds_derivatives.

    Parameters
    ----------
    image
        The image, as discovered in the BIDS dataset.
    output_dir
        The derivatives root; file names come from :mod:`bidsqc.outputs`.
    omp_nthreads
        Threads for the networks; the ANTs steps run on one thread (reproducible
        registrations, see :mod:`bidsqc.preprocessing`).
    device
        Where the networks run: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    name
        Workflow name; must be unique within the run.

    A bad image makes ``check_image`` raise with a clear message. nipype then skips the rest
    of this branch only, and the failure becomes the image's row in the QC table.
    """
    workflow = pe.Workflow(name=name)

    check_image = _check_image_node(image)
    resample = pe.Node(ResampleToZoom(zoom=2.0), name="resample", mem_gb=1.0)
    register = pe.Node(RegisterToTemplate(), name="register", mem_gb=0.5)
    measures = _measures_node()
    motion_qc = pe.Node(
        MotionQC(weights=str(MODELS_DIR / "motion.pt"), num_threads=omp_nthreads, device=device),
        name="motion_qc",
        n_procs=omp_nthreads,
        mem_gb=1.0,
    )
    plot_motion = pe.Node(PlotMotion(), name="plot_motion")
    resample_fine = pe.Node(
        ResampleThroughTransform(resolution=1), name="resample_fine", mem_gb=1.0
    )
    artefact_qc = pe.Node(
        ArtefactQC(
            weights=str(MODELS_DIR / "artefact.pt"), num_threads=omp_nthreads, device=device
        ),
        name="artefact_qc",
        n_procs=omp_nthreads,
        mem_gb=1.5,
    )
    plot_artefacts = pe.Node(PlotMosaic(), name="plot_artefacts")
    registration_qc = _registration_qc_node(omp_nthreads, device)
    plot_raw = pe.Node(PlotMosaic(), name="plot_raw", mem_gb=1.0)
    plot_registered = pe.Node(PlotMosaic(template_outline=True), name="plot_registered")

    workflow.connect([
        (check_image, resample, [("out_file", "in_file")]),
        (check_image, plot_raw, [("out_file", "in_file")]),
        (resample, register, [("out_file", "in_file")]),
        (register, measures, [("out_file", "in_file")]),
        (register, plot_registered, [("out_file", "in_file")]),
        (register, motion_qc, [("out_file", "in_file")]),
        (motion_qc, plot_motion, [("out_file", "in_file")]),
        (register, registration_qc, [("out_file", "in_file")]),
        (check_image, resample_fine, [("out_file", "in_file")]),
        (register, resample_fine, [("out_transform", "transform")]),
        (resample_fine, artefact_qc, [("out_file", "in_file")]),
        (register, plot_artefacts, [("out_file", "in_file")]),
        (artefact_qc, plot_artefacts, [("out_map", "artefact_map")]),
    ])  # fmt: skip
    preproc = outputs.preproc_path(output_dir, image)
    artefact_map = outputs.artefact_map_path(output_dir, image)
    _write_derivatives(
        workflow,
        [
            (register, "out_file", preproc),
            (register, "out_transform", outputs.transform_path(output_dir, image)),
            (plot_raw, "out_file", outputs.figure_path(output_dir, image, "raw")),
            (plot_registered, "out_file", outputs.figure_path(output_dir, image, "registered")),
            (motion_qc, "out_file", outputs.motion_path(output_dir, image)),
            (plot_motion, "out_file", outputs.figure_path(output_dir, image, "motion")),
            (registration_qc, "out_file", outputs.registration_path(output_dir, image)),
            (artefact_qc, "out_file", outputs.artefacts_path(output_dir, image)),
            (artefact_qc, "out_map", artefact_map),
            (plot_artefacts, "out_file", outputs.figure_path(output_dir, image, "artefacts")),
            # Last, so that its presence means every other derivative of this run is in place.
            (measures, "out_file", outputs.measures_path(output_dir, image)),
        ],
        sidecars={
            str(preproc).replace(".nii.gz", ".json"): {
                "Sources": [f"bids:raw:{image.relpath}"],
                "SpatialReference": TEMPLATE_NAME,
                "Resolution": "2 mm isotropic, 96 x 112 x 96 head box",
                "SkullStripped": False,
            },
            str(artefact_map).replace(".nii.gz", ".json"): {
                "Sources": [f"bids:raw:{image.relpath}"],
                "SpatialReference": TEMPLATE_NAME,
                "Description": "Artefact probability of each 64 mm tile of the artefact "
                "network, spread over the voxels the tile covers (mean where tiles overlap, "
                "NaN where no tile holding brain reaches).",
                "Volumes": list(ARTEFACT_PROBABILITY_COLUMNS.values()),
            },
        },
    )
    return workflow


def init_flair_coreg_wf(
    *,
    flair: AnatImage,
    output_dir: Path,
    omp_nthreads: int,
    device: str = "auto",
    name: str = "flair_coreg_wf",
) -> pe.Workflow:
    """Co-register a FLAIR rigidly to the T1w of its session, and QC that co-registration.

    The FLAIR reaches the template through the T1w's transform, so that on the template grid it
    should lie exactly on the registered T1w; the registration-QC network judges the pair.

    Workflow Graph
        inputnode -> coregister -> registration_qc -> ds_derivatives, and
        coregister -> plot_coregistration (the FLAIR with the T1w's edges) -> ds_derivatives.

    Inputs (``inputnode``)
        flair_resampled, t1w_resampled
            Both images reoriented and resampled to 2 mm (``resample`` of their branches).
        t1w_registered, t1w_transform
            The T1w on the template grid, and its transform (``register`` of its branch).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        niu.IdentityInterface(
            fields=["flair_resampled", "t1w_resampled", "t1w_registered", "t1w_transform"]
        ),
        name="inputnode",
    )
    coregister = pe.Node(CoregisterToReference(), name="coregister", mem_gb=0.5)
    registration_qc = _registration_qc_node(omp_nthreads, device)
    registration_qc.inputs.column_suffix = "_to_t1w"
    plot_coregistration = pe.Node(PlotMosaic(), name="plot_coregistration")
    workflow.connect([
        (inputnode, coregister, [("flair_resampled", "in_file"),
                                 ("t1w_resampled", "reference"),
                                 ("t1w_transform", "reference_transform")]),
        (inputnode, registration_qc, [("t1w_registered", "reference")]),
        (inputnode, plot_coregistration, [("t1w_registered", "edges_of")]),
        (coregister, registration_qc, [("out_file", "in_file")]),
        (coregister, plot_coregistration, [("out_file", "in_file")]),
    ])  # fmt: skip
    _write_derivatives(
        workflow,
        [
            (coregister, "out_transform", outputs.transform_path(output_dir, flair, to="T1w")),
            (
                plot_coregistration,
                "out_file",
                outputs.figure_path(output_dir, flair, "coregistration"),
            ),
            (registration_qc, "out_file", outputs.coregistration_path(output_dir, flair)),
        ],
    )
    return workflow


def init_derivative_qc_wf(
    *,
    image: AnatImage,
    output_dir: Path,
    omp_nthreads: int,
    device: str = "auto",
    name: str = "derivative_qc_wf",
) -> pe.Workflow:
    """QC the template registration of an image preprocessed by another pipeline (fMRIPrep).

    Workflow Graph
        check_image -> resample_to_template -> registration_qc -> ds_derivatives, and
        resample_to_template -> plot_registered, measures -> ds_derivatives.

    The image is already in MNI space (:data:`bidsqc.bids.DERIVATIVE_SPACES`): it is only
    resampled onto the template grid, never registered again, so a bad normalisation stays
    visible to the network and to ``rereg_mm`` among the measures.
    """
    workflow = pe.Workflow(name=name)
    check_image = _check_image_node(image)
    resample = pe.Node(ResampleToTemplate(), name="resample_to_template", mem_gb=1.0)
    registration_qc = _registration_qc_node(omp_nthreads, device)
    measures = _measures_node()
    plot_registered = pe.Node(PlotMosaic(template_outline=True), name="plot_registered")
    workflow.connect([
        (check_image, resample, [("out_file", "in_file")]),
        (resample, registration_qc, [("out_file", "in_file")]),
        (resample, measures, [("out_file", "in_file")]),
        (resample, plot_registered, [("out_file", "in_file")]),
    ])  # fmt: skip
    _write_derivatives(
        workflow,
        [
            (plot_registered, "out_file", outputs.figure_path(output_dir, image, "registered")),
            (registration_qc, "out_file", outputs.registration_path(output_dir, image)),
            # Last, as in init_anat_qc_wf.
            (measures, "out_file", outputs.measures_path(output_dir, image)),
        ],
    )
    return workflow
