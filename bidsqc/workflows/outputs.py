"""Writing the derivatives of each workflow: their BIDS names, their sidecars, their order.

Each ``init_ds_*_wf`` takes the files of one QC workflow on its ``inputnode`` and copies them, in
one node, to the names :mod:`bidsqc.outputs.paths` gives them. The measures come last: their
presence means that every other derivative of the run is in place.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bidsqc.discovery import AnatImage
from bidsqc.interfaces.derivatives import WriteDerivatives
from bidsqc.outputs.paths import (
    artefact_map_path,
    artefacts_path,
    coregistration_path,
    figure_path,
    geometry_path,
    measures_path,
    motion_path,
    preproc_path,
    registration_path,
    site_quality_path,
    transform_path,
)
from bidsqc.outputs.sidecars import artefact_map_sidecar, preproc_sidecar, sidecar_path

__all__ = ["init_ds_anat_qc_wf", "init_ds_coregistration_wf", "init_ds_derivative_qc_wf"]


def init_ds_anat_qc_wf(
    *,
    image: AnatImage,
    output_dir: Path,
    site_quality: bool = False,
    networks: bool = True,
    name: str = "ds_anat_qc_wf",
) -> pe.Workflow:
    """The derivatives of :func:`~bidsqc.workflows.anatomical.init_anat_qc_wf`: the registered
    image and its transform, the network outputs and artefact map (and the site-quality
    rating, with ``site_quality``), the figures, the acquisition geometry, the measures. Without
    ``networks``, those of the networks are left out: the batched pass writes them
    (``--device cuda``, :mod:`bidsqc.inference.batched`)."""
    preproc = preproc_path(output_dir, image)
    artefact_map = artefact_map_path(output_dir, image)
    sidecars = {str(sidecar_path(preproc)): preproc_sidecar(image)}
    destinations = {
        "preproc": preproc,
        "transform": transform_path(output_dir, image),
        "raw_figure": figure_path(output_dir, image, "raw"),
        "registered_figure": figure_path(output_dir, image, "registered"),
    }
    if networks:
        sidecars[str(sidecar_path(artefact_map))] = artefact_map_sidecar(image)
        destinations |= {
            "motion": motion_path(output_dir, image),
            "motion_figure": figure_path(output_dir, image, "motion"),
            "registration": registration_path(output_dir, image),
            "artefacts": artefacts_path(output_dir, image),
            "artefact_map": artefact_map,
            "artefacts_figure": figure_path(output_dir, image, "artefacts"),
            **({"site_quality": site_quality_path(output_dir, image)} if site_quality else {}),
        }
    destinations["geometry"] = geometry_path(output_dir, image)
    destinations["measures"] = measures_path(output_dir, image)
    return _init_ds_wf(name, destinations, sidecars)


def init_ds_coregistration_wf(
    *, flair: AnatImage, output_dir: Path, name: str = "ds_coregistration_wf"
) -> pe.Workflow:
    """The derivatives of :func:`~bidsqc.workflows.anatomical.init_flair_coreg_wf`: the FLAIR's
    rigid transform to its T1w, the figure, and the QC of that co-registration (last)."""
    return _init_ds_wf(
        name,
        {
            "transform": transform_path(output_dir, flair, to="T1w"),
            "figure": figure_path(output_dir, flair, "coregistration"),
            "coregistration": coregistration_path(output_dir, flair),
        },
    )


def init_ds_derivative_qc_wf(
    *, image: AnatImage, output_dir: Path, name: str = "ds_derivative_qc_wf"
) -> pe.Workflow:
    """The derivatives of :func:`~bidsqc.workflows.anatomical.init_derivative_qc_wf`: the
    figure, the registration QC, the acquisition geometry, the measures."""
    return _init_ds_wf(
        name,
        {
            "registered_figure": figure_path(output_dir, image, "registered"),
            "registration": registration_path(output_dir, image),
            "geometry": geometry_path(output_dir, image),
            "measures": measures_path(output_dir, image),
        },
    )


def _init_ds_wf(
    name: str, destinations: dict[str, Path], sidecars: dict[str, dict] | None = None
) -> pe.Workflow:
    """A workflow whose ``inputnode`` has one field per destination, each file copied there in
    the listed order, and the JSON ``sidecars`` written beside them."""
    workflow = pe.Workflow(name=name)
    fields = list(destinations)
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    gather = pe.Node(niu.Merge(len(fields)), name="gather", run_without_submitting=True)
    ds_derivatives = pe.Node(
        WriteDerivatives(
            out_paths=[str(path) for path in destinations.values()], sidecars=sidecars or {}
        ),
        name="ds_derivatives",
        run_without_submitting=True,
    )
    workflow.connect([
        (inputnode, gather, [(field, f"in{index}") for index, field in enumerate(fields, 1)]),
        (gather, ds_derivatives, [("out", "in_files")]),
    ])  # fmt: skip
    return workflow
