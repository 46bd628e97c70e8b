"""The QC branch of one anatomical image."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bidsqc import outputs
from bidsqc.bids import AnatImage
from bidsqc.data import MODELS_DIR, TEMPLATE_NAME
from bidsqc.interfaces.bids import WriteDerivatives
from bidsqc.interfaces.measures import ComputeMeasures
from bidsqc.interfaces.networks import MotionQC
from bidsqc.interfaces.preprocessing import CheckImage, RegisterToTemplate, ResampleToZoom
from bidsqc.interfaces.reports import PlotMosaic, PlotMotion

__all__ = ["file_stamp", "init_anat_qc_wf"]


def file_stamp(path: Path) -> str:
    """Size and modification time of ``path`` (or of a dangling link), to key the cache."""
    stat = path.lstat() if not path.exists() else path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


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
        register -> motion_qc -> plot_motion; plot_raw (from the checked image),
        plot_registered and the motion outputs also feed ds_derivatives.

    Parameters
    ----------
    image
        The image, as discovered in the BIDS dataset.
    output_dir
        The derivatives root; file names come from :mod:`bidsqc.outputs`.
    omp_nthreads
        Threads for the ANTs steps (resampling, registration, N4) and the networks.
    device
        Where the networks run: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    name
        Workflow name; must be unique within the run.

    A bad image makes ``check_image`` raise with a clear message. nipype then skips the rest
    of this branch only, and the failure becomes the image's row in the QC table.
    """
    workflow = pe.Workflow(name=name)

    check_image = pe.Node(
        CheckImage(
            in_file=str(image.path),
            sidecar=str(image.sidecar or ""),
            stamp=file_stamp(image.path),
        ),
        name="check_image",
    )
    resample = pe.Node(
        ResampleToZoom(zoom=2.0, num_threads=omp_nthreads),
        name="resample",
        n_procs=omp_nthreads,
        mem_gb=1.0,
    )
    register = pe.Node(
        RegisterToTemplate(num_threads=omp_nthreads),
        name="register",
        n_procs=omp_nthreads,
        mem_gb=0.5,
    )
    measures = pe.Node(
        ComputeMeasures(num_threads=omp_nthreads),
        name="measures",
        n_procs=omp_nthreads,
        mem_gb=0.5,
    )
    motion_qc = pe.Node(
        MotionQC(
            weights=str(MODELS_DIR / "motion.pt"), num_threads=omp_nthreads, device=device
        ),
        name="motion_qc",
        n_procs=omp_nthreads,
        mem_gb=1.0,
    )
    plot_motion = pe.Node(PlotMotion(), name="plot_motion")
    plot_raw = pe.Node(PlotMosaic(), name="plot_raw", mem_gb=1.0)
    plot_registered = pe.Node(PlotMosaic(template_outline=True), name="plot_registered")

    preproc = outputs.preproc_path(output_dir, image)
    destinations = [
        preproc,
        outputs.transform_path(output_dir, image),
        outputs.figure_path(output_dir, image, "raw"),
        outputs.figure_path(output_dir, image, "registered"),
        outputs.motion_path(output_dir, image),
        outputs.figure_path(output_dir, image, "motion"),
        # Last, so that its presence means every other derivative of this run is in place.
        outputs.measures_path(output_dir, image),
    ]
    gather = pe.Node(niu.Merge(len(destinations)), name="gather", run_without_submitting=True)
    ds_derivatives = pe.Node(
        WriteDerivatives(
            out_paths=[str(path) for path in destinations],
            sidecars={
                str(preproc).replace(".nii.gz", ".json"): {
                    "Sources": [f"bids:raw:{image.relpath}"],
                    "SpatialReference": TEMPLATE_NAME,
                    "Resolution": "2 mm isotropic, 96 x 112 x 96 head box",
                    "SkullStripped": False,
                }
            },
        ),
        name="ds_derivatives",
        run_without_submitting=True,
    )

    workflow.connect([
        (check_image, resample, [("out_file", "in_file")]),
        (check_image, plot_raw, [("out_file", "in_file")]),
        (resample, register, [("out_file", "in_file")]),
        (register, measures, [("out_file", "in_file")]),
        (register, plot_registered, [("out_file", "in_file")]),
        (register, motion_qc, [("out_file", "in_file")]),
        (motion_qc, plot_motion, [("out_file", "in_file")]),
        (register, gather, [("out_file", "in1"), ("out_transform", "in2")]),
        (plot_raw, gather, [("out_file", "in3")]),
        (plot_registered, gather, [("out_file", "in4")]),
        (motion_qc, gather, [("out_file", "in5")]),
        (plot_motion, gather, [("out_file", "in6")]),
        (measures, gather, [("out_file", "in7")]),
        (gather, ds_derivatives, [("out", "in_files")]),
    ])  # fmt: skip
    return workflow
