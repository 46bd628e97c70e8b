"""End to end: participant and group levels on the demo dataset and on bad inputs."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from bidsqc.cli.run import main
from bidsqc.decisions import DEFAULT_THRESHOLDS
from bidsqc.outputs.columns import (
    ARTEFACT_PROBABILITY_COLUMNS,
    GEOMETRY_COLUMNS,
    ID_COLUMNS,
    QC_COLUMNS,
    SITE_QUALITY_COLUMNS,
)
from bidsqc.outputs.tables import read_qc_table
from bidsqc.training.pairs import Misalignment, misaligned
from bidsqc.validity import ACQUISITION_COLUMNS

pytestmark = pytest.mark.slow

#: Columns only a FLAIR with a T1w in its session has.
FLAIR_T1W_COLUMNS = ["p_misregistered_to_t1w", "registration_error_to_t1w_mm"]
#: Columns every processed raw image has (a site-quality network's only with --models-dir).
IMAGE_COLUMNS = [
    column
    for column in QC_COLUMNS
    if column not in FLAIR_T1W_COLUMNS and column not in SITE_QUALITY_COLUMNS
]
#: What a scan's acquisition can leave not assessed: every image column but the coverage.
NETWORK_AND_MEASURE_COLUMNS = [
    column for column in IMAGE_COLUMNS if column not in ACQUISITION_COLUMNS
]


def test_demo_exit_codes_and_input_untouched(demo_dir, demo_run, snapshot):
    out, before, first, group = demo_run
    assert first == 0
    assert group == 0
    assert snapshot(demo_dir) == before


def test_demo_dataset_description(demo_run):
    out = demo_run[0]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bidsqc"
    assert description["SourceDatasets"]
    assert (out / ".bidsignore").is_file()
    assert (out / "logs").is_dir()


def test_demo_participant_tables(demo_run):
    out = demo_run[0]
    expected = {"sub-01": 3, "sub-02": 2}
    for participant, n_rows in expected.items():
        table = read_qc_table(out / participant / f"{participant}_qc.tsv")
        assert list(table.columns) == [*ID_COLUMNS, *GEOMETRY_COLUMNS, *QC_COLUMNS]
        assert len(table) == n_rows
        assert (table["status"] == "ok").all(), table["error"].tolist()
        assert not table[IMAGE_COLUMNS].isna().any().any()
        is_flair = table["modality"] == "FLAIR"
        assert table.loc[is_flair, FLAIR_T1W_COLUMNS].notna().all().all()
        assert table.loc[~is_flair, FLAIR_T1W_COLUMNS].isna().all().all()
        assert (table["dataset"] == "raw").all()
        assert table["filename"].str.startswith(f"{participant}/anat/").all()
        dictionary = json.loads((out / participant / f"{participant}_qc.json").read_text())
        assert set(dictionary) == set(table.columns)
        assert all(entry["Description"] for entry in dictionary.values())
        assert dictionary["motion_grade"]["Levels"] == {"0": "none", "1": "mild", "2": "severe"}
        assert (out / f"{participant}.html").stat().st_size > 10_000


def test_demo_motion_image_is_graded_above_its_clean_twin(demo_run):
    """run-2 is run-1 with 16 mm RMS of simulated motion (data/demo/code/make_demo.py)."""
    table = read_qc_table(demo_run[0] / "sub-01" / "sub-01_qc.tsv").set_index("filename")
    clean = table.loc["sub-01/anat/sub-01_run-1_T1w.nii.gz"]
    moved = table.loc["sub-01/anat/sub-01_run-2_T1w.nii.gz"]
    assert clean["motion_grade"] == 0
    assert moved["motion_grade"] > clean["motion_grade"]
    assert moved["p_motion_none"] < 0.5 < clean["p_motion_none"]
    assert moved["motion_mm"] > clean["motion_mm"] + 5
    assert moved["snr_wm_local"] < 0.8 * clean["snr_wm_local"]
    probabilities = table[["p_motion_none", "p_motion_mild", "p_motion_severe"]].sum(axis=1)
    assert np.allclose(probabilities, 1, atol=1e-4)
    html = (demo_run[0] / "sub-01.html").read_text()
    assert "motion: none" in html
    assert f"motion: {('mild', 'severe')[int(moved['motion_grade']) - 1]}" in html
    motion = json.loads(
        (demo_run[0] / "sub-01" / "anat" / "sub-01_run-2_desc-motion_T1w.json").read_text()
    )
    assert len(motion["mm_distribution"]) == 50
    assert (demo_run[0] / "sub-01" / "figures" / "sub-01_run-2_desc-motion_T1w.png").is_file()


def test_demo_noisy_image_scores_worse_than_its_clean_twin(demo_run):
    """run-3 is run-1 with Rician noise of severity 0.6 (data/demo/code/make_demo.py)."""
    out = demo_run[0]
    table = read_qc_table(out / "sub-01" / "sub-01_qc.tsv").set_index("filename")
    clean = table.loc["sub-01/anat/sub-01_run-1_T1w.nii.gz"]
    noisy = table.loc["sub-01/anat/sub-01_run-3_T1w.nii.gz"]
    threshold = DEFAULT_THRESHOLDS["p_noise"].review
    assert clean["p_noise"] < threshold < noisy["p_noise"]
    assert noisy["quality_score"] < clean["quality_score"] - 1
    assert noisy["snr_wm_local"] < 0.8 * clean["snr_wm_local"]
    assert "p_noise" in noisy["reasons"]
    anat = out / "sub-01" / "anat"
    artefacts = json.loads((anat / "sub-01_run-3_desc-artefacts_T1w.json").read_text())
    assert artefacts["p_noise"] == pytest.approx(noisy["p_noise"], rel=1e-4)
    assert len(artefacts["tiles"]) > 10
    artefact_map = nb.load(
        anat / "sub-01_run-3_space-MNI152NLin2009cSym_res-2_desc-artefactmap_T1w.nii.gz"
    )
    assert artefact_map.shape == (96, 112, 96, len(ARTEFACT_PROBABILITY_COLUMNS))
    sidecar = json.loads(
        (anat / "sub-01_run-3_space-MNI152NLin2009cSym_res-2_desc-artefactmap_T1w.json").read_text()
    )
    assert sidecar["Volumes"][3] == "p_noise"
    assert np.nanmax(artefact_map.dataobj[..., 3]) >= 0.5
    assert (out / "sub-01" / "figures" / "sub-01_run-3_desc-artefacts_T1w.png").is_file()
    assert re.search(r"quality [\d.]+/10: [a-z, ]*noise", (out / "sub-01.html").read_text())


def test_demo_derivatives(demo_run):
    out = demo_run[0]
    anat = out / "sub-02" / "anat"
    preproc = nb.load(anat / "sub-02_space-MNI152NLin2009cSym_res-2_desc-preproc_FLAIR.nii.gz")
    assert preproc.shape == (96, 112, 96)
    assert np.allclose(preproc.header.get_zooms(), 2.0)
    assert (anat / "sub-02_from-FLAIR_to-MNI152NLin2009cSym_mode-image_xfm.mat").is_file()
    assert (out / "sub-02" / "figures" / "sub-02_desc-registered_FLAIR.png").is_file()


def test_demo_flair_is_coregistered_to_its_t1w_and_judged_aligned(demo_run):
    out = demo_run[0]
    anat = out / "sub-02" / "anat"
    assert (anat / "sub-02_from-FLAIR_to-T1w_mode-image_xfm.mat").is_file()
    assert (out / "sub-02" / "figures" / "sub-02_desc-coregistration_FLAIR.png").is_file()
    table = read_qc_table(out / "sub-02" / "sub-02_qc.tsv").set_index("modality")
    assert table.loc["FLAIR", "p_misregistered_to_t1w"] < 0.5
    assert table.loc["FLAIR", "registration_error_to_t1w_mm"] < 4
    assert (table["p_misregistered"] < 0.5).all()
    assert "aligned to T1w" in (out / "sub-02.html").read_text()


def test_derivatives_get_registration_qc_and_a_shifted_one_scores_worse(
    demo_dir, demo_run, tmp_path
):
    """fMRIPrep-style derivatives: the demo T1w as bidsqc registered it, and a copy shifted
    and turned by 9.5 mm RMS; both join the raw images' tables, with every measure."""
    out = demo_run[0]
    registered = nb.load(
        out / "sub-02" / "anat" / "sub-02_space-MNI152NLin2009cSym_res-2_desc-preproc_T1w.nii.gz"
    )
    data = registered.get_fdata(dtype=np.float32)
    misalignment = Misalignment(degrees=(6, 0, 4), translation=(5, -4, 3))
    shifted = misaligned(data, misalignment)
    fmriprep = tmp_path / "fmriprep"
    anat = fmriprep / "sub-02" / "anat"
    anat.mkdir(parents=True)
    names = {
        "aligned": "sub-02_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz",
        "shifted": "sub-02_acq-shifted_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz",
    }
    for key, volume in (("aligned", data), ("shifted", shifted)):
        nb.save(nb.Nifti1Image(volume, registered.affine), anat / names[key])
    args = [str(demo_dir), str(out), "participant", "--nprocs", "2", "--derivatives", str(fmriprep)]
    assert main([*args, "--participant-label", "02"]) == 0
    table = read_qc_table(out / "sub-02" / "sub-02_qc.tsv")
    assert sorted(table["dataset"]) == ["fmriprep", "fmriprep", "raw", "raw"]
    rows = table.set_index("filename")
    aligned, moved = (rows.loc[f"sub-02/anat/{names[key]}"] for key in ("aligned", "shifted"))
    assert moved["p_misregistered"] > aligned["p_misregistered"]
    assert moved["registration_error_mm"] > aligned["registration_error_mm"] + 3
    assert aligned["p_misregistered"] < 0.5 < moved["p_misregistered"]
    assert aligned["rereg_mm"] < 1
    assert moved["rereg_mm"] == pytest.approx(misalignment.rms_mm, abs=1)
    assert np.isfinite(aligned["snr"])
    assert np.isnan(aligned["snr_wm_local"])  # no native grid to read it on
    assert (out / "fmriprep" / "sub-02" / "anat").is_dir()


def test_demo_group_tables(demo_run):
    out = demo_run[0]
    t1w = read_qc_table(out / "group_T1w.tsv")
    flair = read_qc_table(out / "group_FLAIR.tsv")
    assert len(t1w) == 4
    assert len(flair) == 1
    assert set(t1w["participant_id"]) == {"sub-01", "sub-02"}
    html = (out / "group_T1w.html").read_text()
    assert "sub-01.html" in html
    assert "sub-02.html" in html


def test_demo_rerun_resumes_from_the_cache(demo_dir, demo_run):
    out = demo_run[0]
    results = sorted((out / "work").rglob("register/result_register.pklz"))
    assert len(results) == 5
    stamps = [path.stat().st_mtime_ns for path in results]
    table = (out / "sub-01" / "sub-01_qc.tsv").read_text()
    assert main([str(demo_dir), str(out), "participant", "--participant-label", "01"]) == 0
    assert [path.stat().st_mtime_ns for path in results] == stamps
    assert (out / "sub-01" / "sub-01_qc.tsv").read_text() == table


def test_demo_group_decisions_follow_the_thresholds_file(demo_dir, demo_run, tmp_path):
    out = demo_run[0]
    assert (out / "group_exclude.tsv").is_file()
    strict = tmp_path / "strict.json"
    strict.write_text('{"motion_grade": {"review": 1, "fail": 1}}')
    assert main([str(demo_dir), str(out), "group", "--thresholds", str(strict)]) == 0
    excluded = read_qc_table(out / "group_exclude.tsv")
    assert excluded["filename"].tolist() == ["sub-01/anat/sub-01_run-2_T1w.nii.gz"]
    assert excluded["reasons"].str.fullmatch(r"fail: motion_grade [12] >= 1").all()
    assert (out / "group_pass_participants.txt").read_text() == "02\n"
    t1w = read_qc_table(out / "group_T1w.tsv").set_index("filename")
    assert t1w.loc["sub-01/anat/sub-01_run-1_T1w.nii.gz", "decision"] == "pass"
    lenient = tmp_path / "lenient.json"
    lenient.write_text("{}")
    assert main([str(demo_dir), str(out), "group", "--thresholds", str(lenient)]) == 0
    assert read_qc_table(out / "group_exclude.tsv").empty
    assert (out / "group_pass_participants.txt").read_text() == "01\n02\n"


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb.save(nb.Nifti1Image(data, affine), path)


@pytest.fixture(scope="module")
def bad_dataset(demo_dir, tmp_path_factory):
    """A dataset where every participant but the first has one kind of bad or unusual image."""
    root = tmp_path_factory.mktemp("bad") / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "bad", "BIDSVersion": "1.9.0"}')
    good = demo_dir / "sub-01" / "anat" / "sub-01_run-1_T1w.nii.gz"
    img = nb.load(good)

    def anat(label: str) -> Path:
        return root / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"

    anat("good").parent.mkdir(parents=True)
    shutil.copyfile(good, anat("good"))
    anat("empty").parent.mkdir(parents=True)
    anat("empty").touch()
    anat("truncated").parent.mkdir(parents=True)
    anat("truncated").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    small = np.random.default_rng(0).random((40, 40, 40)).astype(np.float32)
    two_mm = np.diag([2.0, 2.0, 2.0, 1.0])
    _save(np.stack([small, small], axis=-1), two_mm, anat("fourd"))
    _save(np.zeros((40, 40, 40), np.float32), two_mm, anat("zeros"))
    with_nan = small.copy()
    with_nan[10, 10, 10] = np.nan
    _save(with_nan, two_mm, anat("nan"))
    _save(small, np.diag([1.0, 1.0, 15.0, 1.0]), anat("toothick"))
    # Noise of a head's size, in which brain extraction finds a brain of plausible volume.
    noise = np.random.default_rng(0).random((75, 75, 75)).astype(np.float32)
    _save(100 * noise, two_mm, anat("noise"))
    # A head-sized water phantom: a uniform ellipsoid, with noise.
    axes = (np.indices((80, 100, 80)) - np.array([40, 50, 40])[:, None, None, None]) * 2.0
    inside = ((axes / np.array([70, 90, 75])[:, None, None, None]) ** 2).sum(axis=0) <= 1
    phantom = 800 * inside + np.random.default_rng(1).normal(0, 20, inside.shape)
    _save(np.abs(phantom).astype(np.float32), two_mm, anat("phantom"))
    # The good image as a clinical 2D scan: 8 mm slices, each the mean of 8 of its 1 mm ones.
    good_data = np.asanyarray(img.dataobj).astype(np.float32)
    depth = good_data.shape[2] // 8 * 8
    slabs = good_data[..., :depth].reshape(*good_data.shape[:2], -1, 8).mean(axis=-1)
    thick_affine = img.affine.copy()
    thick_affine[:3, 2] *= 8
    thick_affine[:3, 3] += 3.5 * img.affine[:3, 2]
    _save(slabs, thick_affine, anat("thick"))
    # The same 8 mm slices exported on the 1 mm grid, each repeated 8 times.
    _save(np.repeat(slabs, 8, axis=2), img.affine, anat("restacked"))
    # The good image, its axes permuted and flipped, and the head turned by 15 degrees.
    ornt = np.array([[1, -1], [0, 1], [2, 1]])
    data = nb.orientations.apply_orientation(np.asanyarray(img.dataobj), ornt)
    affine = img.affine @ nb.orientations.inv_ornt_aff(ornt, img.shape)
    angle = np.deg2rad(15)
    turn = np.eye(4)
    turn[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    _save(data, turn @ affine, anat("oblique"))
    # The good image upside down in its voxels, its header unchanged (a conversion error).
    _save(good_data[:, ::-1, ::-1], img.affine, anat("upsidedown"))
    # The good image as a slab planned short of the cerebellum: its lowest 45 planes dropped.
    slab_affine = img.affine @ nb.affines.from_matvec(np.eye(3), [0, 0, 45])
    _save(good_data[:, :, 45:], slab_affine, anat("slab"))
    # The good image as a signed reconstruction writes it: every intensity negative.
    _save(good_data - good_data.max() - 1, img.affine, anat("negative"))
    anat("sidecar").parent.mkdir(parents=True)
    shutil.copyfile(good, anat("sidecar"))
    anat("sidecar").with_name("sub-sidecar_T1w.json").write_text('{"RepetitionTime": 2.3,,}')
    anat("symlink").parent.mkdir(parents=True)
    anat("symlink").symlink_to(good.resolve())
    anat("dangling").parent.mkdir(parents=True)
    anat("dangling").symlink_to(root.parent / "annex" / "missing.nii.gz")
    return root


EXPECTED_FAILURES = {
    "empty": "empty file",
    "truncated": "truncated or corrupt",
    "fourd": "4D with 2 volumes",
    "zeros": "constant",
    "nan": "NaN",
    "toothick": "slices thicker than 12 mm",
    "noise": "shows no brain anatomy",
    "phantom": "shows no brain anatomy",
    "upsidedown": "orientation is probably wrong: what it calls right, anterior and superior is "
    "anatomically R, P, I",
    "sidecar": "not valid JSON",
    "dangling": "broken symlink",
}


def test_bad_inputs_get_failed_rows_and_the_rest_is_processed(bad_dataset, tmp_path, snapshot):
    before = snapshot(bad_dataset)
    out = tmp_path / "out"
    assert main([str(bad_dataset), str(out), "participant"]) == 1
    rows = pd.concat(
        [read_qc_table(path) for path in sorted(out.glob("sub-*/sub-*_qc.tsv"))]
    ).set_index("participant_id")
    assert len(rows) == 18
    for label, message in EXPECTED_FAILURES.items():
        row = rows.loc[f"sub-{label}"]
        assert row["status"] == "failed", label
        assert message in row["error"], (label, row["error"])
    for label in ("good", "oblique", "symlink", "negative"):
        row = rows.loc[f"sub-{label}"]
        assert row["status"] == "ok", (label, row["error"])
        assert not row[IMAGE_COLUMNS].isna().any()
    thick = rows.loc["sub-thick"]
    assert thick["status"] == "ok" and thick["slice_mm"] == pytest.approx(8.0)
    assert thick["decision"] == "review" and "slices of 8.0 mm" in thick["not_assessed"]
    assert thick[NETWORK_AND_MEASURE_COLUMNS].isna().all()
    assert thick["brain_coverage"] > 0.97
    assert (out / "sub-thick" / "anat").is_dir()  # registered, with its figures, for a person
    restacked = rows.loc["sub-restacked"]
    assert restacked["slice_mm"] == pytest.approx(8.0, rel=0.05)
    assert restacked["decision"] == "review" and "slices of 8" in restacked["not_assessed"]
    slab = rows.loc["sub-slab"]
    assert slab["status"] == "ok" and slab["brain_coverage"] < 0.97
    assert slab["decision"] == "review" and "of the brain" in slab["not_assessed"]
    assert slab[NETWORK_AND_MEASURE_COLUMNS].isna().all()
    # The turned copy registers onto the template like the original.
    assert abs(rows.loc["sub-oblique", "nmi"] - rows.loc["sub-good", "nmi"]) < 0.02
    assert (
        abs(rows.loc["sub-negative", "quality_score"] - rows.loc["sub-good", "quality_score"]) < 1
    )
    assert "empty file" in (out / "sub-empty.html").read_text()
    assert snapshot(bad_dataset) == before


def test_output_inside_the_dataset_is_refused(bad_dataset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(bad_dataset), str(bad_dataset / "derivatives" / "qc"), "participant"])
    assert exit_info.value.code == 2
    assert "inside the BIDS dataset" in capsys.readouterr().err


def test_not_bids_is_a_dataset_error(tmp_path):
    (tmp_path / "plain").mkdir()
    assert main([str(tmp_path / "plain"), str(tmp_path / "out"), "participant"]) == 2


def test_truncated_gzip_fixture_is_really_truncated(bad_dataset):
    path = bad_dataset / "sub-truncated" / "anat" / "sub-truncated_T1w.nii.gz"
    with pytest.raises(EOFError), gzip.open(path) as stream:
        stream.read()


def test_bids_examples_give_a_failed_row_per_placeholder(bids_examples, tmp_path, snapshot):
    """Every NIfTI in bids-examples is an empty placeholder: each is a failed row, no crash."""
    for layout in sorted(path for path in bids_examples.iterdir() if path.is_dir()):
        out = tmp_path / layout.name
        before = snapshot(layout)
        code = main([str(layout), str(out), "participant"])
        assert snapshot(layout) == before, layout.name
        kind = json.loads((layout / "dataset_description.json").read_text()).get("DatasetType")
        if kind == "derivative":
            assert code == 2, layout.name
            continue
        rows = pd.concat([read_qc_table(path) for path in out.glob("sub-*/sub-*_qc.tsv")])
        assert code == 1, layout.name
        assert len(rows) > 0, layout.name
        assert (rows["status"] == "failed").all(), layout.name
        assert rows["error"].str.contains("empty file|truncated or corrupt").all(), layout.name
