"""The workflows of the demo dataset, built but not run: their nodes and their connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from bidsqc.discovery import AnatImage
from bidsqc.outputs.paths import (
    coregistration_path,
    figure_path,
    measures_path,
    preproc_path,
    registration_path,
    transform_path,
)
from bidsqc.workflows.anatomical import (
    init_anat_qc_wf,
    init_derivative_qc_wf,
    init_flair_coreg_wf,
)
from bidsqc.workflows.base import init_bidsqc_wf, init_single_subject_wf
from bidsqc.workflows.settings import QCSettings

ANAT_QC_NODES = {
    "inputnode",
    "check_image",
    "resample",
    "register",
    "resample_fine",
    "measures",
    "motion_qc",
    "plot_motion",
    "registration_qc",
    "artefact_qc",
    "plot_artefacts",
    "plot_raw",
    "plot_registered",
    "outputnode",
    "ds_anat_qc_wf",
}


def demo_image(demo_dir: Path, relpath: str, dataset: str = "raw") -> AnatImage:
    path = demo_dir / relpath
    subject = relpath.split("/")[0].removeprefix("sub-")
    entities = {"run": path.name.split("run-")[1][0]} if "run-" in path.name else {}
    modality = "FLAIR" if "FLAIR" in path.name else "T1w"
    return AnatImage(path, relpath, subject, None, modality, entities, None, dataset)


def connections(workflow) -> set[tuple[str, str, str, str]]:
    """Every (source node, output, destination node, input) of the workflow's own graph."""
    return {
        (source.name, output, destination.name, field)
        for source, destination, data in workflow._graph.edges(data=True)
        for output, field in data["connect"]
    }


def node(workflow, name: str):
    (found,) = [n for n in workflow._graph.nodes() if n.name == name]
    return found


@pytest.fixture
def settings(tmp_path: Path) -> QCSettings:
    return QCSettings(output_dir=tmp_path / "out", omp_nthreads=2, device="cpu")


def test_anat_qc_wf(demo_dir: Path, settings: QCSettings) -> None:
    image = demo_image(demo_dir, "sub-01/anat/sub-01_run-1_T1w.nii.gz")
    workflow = init_anat_qc_wf(image=image, settings=settings, name="anat_qc_wf")
    assert {n.name for n in workflow._graph.nodes()} == ANAT_QC_NODES
    edges = connections(workflow)
    assert ("inputnode", "in_file", "check_image", "in_file") in edges
    assert ("check_image", "out_file", "resample_fine", "in_file") in edges
    assert ("register", "out_transform", "resample_fine", "transform") in edges
    assert ("resample_fine", "out_file", "artefact_qc", "in_file") in edges
    assert ("resample_fine", "out_file", "measures", "fine") in edges
    assert {(s, o, f) for s, o, d, f in edges if d == "outputnode"} == {
        ("resample", "out_file", "resampled"),
        ("register", "out_file", "registered"),
        ("register", "out_transform", "transform"),
    }
    assert node(workflow, "inputnode").inputs.in_file == str(image.path)
    for network in ("motion_qc", "artefact_qc", "registration_qc"):
        assert node(workflow, network).inputs.num_threads == 2
        assert node(workflow, network).inputs.device == "cpu"

    ds = node(workflow, "ds_anat_qc_wf")
    fed = {field.removeprefix("inputnode.") for s, o, d, field in edges if d == "ds_anat_qc_wf"}
    assert fed == set(node(ds, "inputnode").inputs.copyable_trait_names())
    written = node(ds, "ds_derivatives").inputs.out_paths
    out = settings.output_dir
    assert written[0] == str(preproc_path(out, image))
    assert written[1] == str(transform_path(out, image))
    assert written[-1] == str(measures_path(out, image))  # last: the branch is complete
    assert len(written) == len(set(written)) == 12
    sidecars = node(ds, "ds_derivatives").inputs.sidecars
    preproc_sidecar = sidecars[str(preproc_path(out, image)).replace(".nii.gz", ".json")]
    assert preproc_sidecar["Sources"] == [f"bids:raw:{image.relpath}"]


def test_flair_coreg_wf(demo_dir: Path, settings: QCSettings) -> None:
    flair = demo_image(demo_dir, "sub-02/anat/sub-02_FLAIR.nii.gz")
    workflow = init_flair_coreg_wf(flair=flair, settings=settings)
    edges = connections(workflow)
    assert ("inputnode", "t1w_registered", "registration_qc", "reference") in edges
    assert ("inputnode", "t1w_transform", "coregister", "reference_transform") in edges
    ds = node(workflow, "ds_coregistration_wf")
    assert node(ds, "ds_derivatives").inputs.out_paths == [
        str(transform_path(settings.output_dir, flair, to="T1w")),
        str(figure_path(settings.output_dir, flair, "coregistration")),
        str(coregistration_path(settings.output_dir, flair)),
    ]
    assert node(workflow, "registration_qc").inputs.column_suffix == "_to_t1w"


def test_derivative_qc_wf_never_registers_again(
    demo_dir: Path, settings: QCSettings, tmp_path: Path
) -> None:
    path = tmp_path / "fmriprep" / "sub-01" / "anat"
    path.mkdir(parents=True)
    name = "sub-01_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz"
    (path / name).write_bytes((demo_dir / "sub-01/anat/sub-01_run-1_T1w.nii.gz").read_bytes())
    image = AnatImage(path / name, f"sub-01/anat/{name}", "01", None, "T1w", {}, None, "fmriprep")
    workflow = init_derivative_qc_wf(image=image, settings=settings)
    names = {n.name for n in workflow._graph.nodes()}
    assert "register" not in names and "resample_to_template" in names
    fed_measures = {f for s, o, d, f in connections(workflow) if d == "measures"}
    assert fed_measures == {"in_file", "brain_mask"}  # no native grid: snr_wm_local is n/a
    ds = node(workflow, "ds_derivative_qc_wf")
    written = node(ds, "ds_derivatives").inputs.out_paths
    assert written[1] == str(registration_path(settings.output_dir, image))
    assert written[-1] == str(measures_path(settings.output_dir, image))


def test_subjects_connect_only_through_inputnodes_and_outputnodes(
    demo_dir: Path, settings: QCSettings
) -> None:
    flair = demo_image(demo_dir, "sub-02/anat/sub-02_FLAIR.nii.gz")
    t1w = demo_image(demo_dir, "sub-02/anat/sub-02_T1w.nii.gz")
    workflow = init_single_subject_wf(subject="02", images=[flair, t1w], settings=settings)
    edges = connections(workflow)
    assert {(s, d) for s, _, d, _ in edges} == {
        ("anat_qc_sub_02_FLAIR_wf", "flair_coreg_sub_02_FLAIR_wf"),
        ("anat_qc_sub_02_T1w_wf", "flair_coreg_sub_02_FLAIR_wf"),
    }
    assert all(o.startswith("outputnode.") and f.startswith("inputnode.") for _, o, _, f in edges)
    assert ("anat_qc_sub_02_T1w_wf", "outputnode.transform") in {(s, o) for s, o, _, _ in edges}


def test_the_demo_graph(demo_dir: Path, settings: QCSettings, tmp_path: Path) -> None:
    relpaths = [
        "sub-01/anat/sub-01_run-1_T1w.nii.gz",
        "sub-01/anat/sub-01_run-2_T1w.nii.gz",
        "sub-01/anat/sub-01_run-3_T1w.nii.gz",
        "sub-02/anat/sub-02_FLAIR.nii.gz",
        "sub-02/anat/sub-02_T1w.nii.gz",
    ]
    workflow = init_bidsqc_wf(
        images=[demo_image(demo_dir, relpath) for relpath in relpaths],
        settings=settings,
        work_dir=tmp_path / "work",
    )
    assert sorted(n.name for n in workflow._graph.nodes()) == [
        "single_subject_01_wf",
        "single_subject_02_wf",
    ]
    flat = workflow._create_flat_graph()
    names = [n.fullname for n in flat.nodes()]
    per_image = len(ANAT_QC_NODES) - 1 + 3  # the ds workflow: inputnode, gather, ds_derivatives
    coregistration = 4 + 3  # inputnode, coregister, registration_qc, plot; the ds workflow
    assert len(names) == 5 * per_image + coregistration
    assert len(names) == len(set(names))
