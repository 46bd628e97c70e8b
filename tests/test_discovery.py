"""Tests of dataset discovery (bidsqc.discovery)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bidsqc.discovery import (
    AnatImage,
    BIDSError,
    NotBIDSError,
    collect_data,
    collect_derivatives,
    collect_participants,
    init_layout,
    load_bids_filters,
)

BIDS_EXAMPLES = Path(__file__).parents[2] / "shared" / "data" / "bids-examples"


def dataset_type(root: Path) -> str | None:
    """``DatasetType`` of the dataset at ``root``, ``None`` if it is not a dataset."""
    description = root / "dataset_description.json"
    if not description.is_file():
        return None
    return json.loads(description.read_text()).get("DatasetType", "raw")


RAW_EXAMPLES = sorted(path.name for path in BIDS_EXAMPLES.glob("*") if dataset_type(path) == "raw")
needs_examples = pytest.mark.skipif(not RAW_EXAMPLES, reason=f"no BIDS examples in {BIDS_EXAMPLES}")

TINY_FILES = [
    "participants.tsv",
    "sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.nii.gz",
    "sub-01/ses-1/anat/sub-01_ses-1_run-2_T1w.nii.gz",
    "sub-01/ses-1/anat/sub-01_ses-1_run-2_T1w.json",
    "sub-01/ses-1/anat/sub-01_ses-1_run-10_T1w.nii.gz",
    "sub-01/ses-1/anat/sub-01_ses-1_acq-mprage_ce-gad_rec-norm_T1w.nii.gz",
    "sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz",
    "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz",
    "sub-01/ses-1/anat/sub-01_ses-1_bogus-entity_T1w.nii.gz",
    "sub-01/ses-1/func/sub-01_ses-1_task-rest_bold.nii.gz",
    "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii",
    "sub-03/func/sub-03_task-rest_bold.nii.gz",
    ".git/annex/objects/blob",
    "derivatives/other/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
    "sourcedata/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
    "code/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
]


@pytest.fixture
def tiny_bids(make_bids) -> Path:
    """Two sessions, runs and acq/ce/rec, and the oddities discovery must survive.

    ``sub-02`` holds a git-annex-like symbolic link, a dangling one and a hidden
    AppleDouble file; ``sub-03`` has no anatomical data; ``sub-01`` has a broken JSON
    sidecar and a file whose name is not BIDS.
    """
    root = make_bids(TINY_FILES)
    (root / "sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.json").write_text("{not json")
    anat = root / "sub-02" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-02_T1w.nii.gz").symlink_to("../../.git/annex/objects/blob")
    (anat / "sub-02_FLAIR.nii.gz").symlink_to("../../.git/annex/objects/missing")
    (anat / "._sub-02_T1w.nii.gz").write_text("")
    return root


def snapshot(root: Path) -> dict[str, int]:
    """Map every path under ``root`` to its modification time, not following links."""
    return {str(path): path.lstat().st_mtime_ns for path in [root, *root.rglob("*")]}


# --- generated dataset --------------------------------------------------------------------


def test_tiny_dataset(tiny_bids):
    layout = init_layout(tiny_bids)
    assert collect_participants(layout) == ["01", "02"]
    images = collect_data(layout, ["01", "02"])

    assert [image.relpath for image in images] == [
        "sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz",
        "sub-01/ses-1/anat/sub-01_ses-1_acq-mprage_ce-gad_rec-norm_T1w.nii.gz",
        "sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.nii.gz",
        "sub-01/ses-1/anat/sub-01_ses-1_run-2_T1w.nii.gz",
        "sub-01/ses-1/anat/sub-01_ses-1_run-10_T1w.nii.gz",
        "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii",
        "sub-02/anat/sub-02_FLAIR.nii.gz",
        "sub-02/anat/sub-02_T1w.nii.gz",
    ]
    for image in images:
        assert image.path == tiny_bids / image.relpath
        assert image.modality == image.stem.rsplit("_", 1)[1]


def test_anat_image_fields(tiny_bids):
    layout = init_layout(tiny_bids)
    image = next(
        image for image in collect_data(layout, "01") if image.entities.get("acq") == "mprage"
    )
    assert image == AnatImage(
        path=tiny_bids / "sub-01/ses-1/anat/sub-01_ses-1_acq-mprage_ce-gad_rec-norm_T1w.nii.gz",
        relpath="sub-01/ses-1/anat/sub-01_ses-1_acq-mprage_ce-gad_rec-norm_T1w.nii.gz",
        subject="01",
        session="1",
        modality="T1w",
        entities={"acq": "mprage", "ce": "gad", "rec": "norm"},
        sidecar=None,
    )
    assert image.stem == "sub-01_ses-1_acq-mprage_ce-gad_rec-norm_T1w"
    assert image.key == "sub_01_ses_1_acq_mprage_ce_gad_rec_norm_T1w"
    assert hash(image) == hash(image)


def test_sidecars_are_found_not_read(tiny_bids):
    images = {image.stem: image for image in collect_data(init_layout(tiny_bids), "01")}
    # The broken sidecar did not stop indexing, and it is found for the pipeline to judge.
    assert images["sub-01_ses-1_run-1_T1w"].sidecar == (
        tiny_bids / "sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.json"
    )
    assert images["sub-01_ses-1_run-2_T1w"].sidecar.is_file()
    assert images["sub-01_ses-1_run-10_T1w"].sidecar is None
    assert images["sub-01_ses-1_run-10_T1w"].entities == {"run": "10"}


def test_symbolic_links_are_kept(tiny_bids):
    images = {image.modality: image for image in collect_data(init_layout(tiny_bids), "sub-02")}
    assert images["T1w"].path.is_symlink() and images["T1w"].path.exists()
    assert images["FLAIR"].path.is_symlink() and not images["FLAIR"].path.exists()
    assert images["T1w"].path.parent == tiny_bids / "sub-02" / "anat"
    assert images["T1w"].session is None


def test_skip_validation_indexes_non_bids_names(tiny_bids):
    layout = init_layout(tiny_bids, validate=False)
    stems = [image.stem for image in collect_data(layout, "01", session_label="1")]
    assert "sub-01_ses-1_bogus-entity_T1w" in stems
    assert len(stems) == 6


def test_symlinked_dataset_root(tiny_bids, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tiny_bids)
    images = collect_data(init_layout(link), "02")
    assert [image.path.parent for image in images] == [link / "sub-02" / "anat"] * 2
    assert images[0].relpath == "sub-02/anat/sub-02_FLAIR.nii.gz"


def test_discovery_writes_nothing_in_dataset(tiny_bids):
    before = snapshot(tiny_bids)
    layout = init_layout(tiny_bids)
    collect_data(layout, collect_participants(layout))
    assert snapshot(tiny_bids) == before
    # A second run indexes again: it sees a participant added since.
    (tiny_bids / "sub-04/anat").mkdir(parents=True)
    (tiny_bids / "sub-04/anat/sub-04_T1w.nii.gz").write_text("")
    assert "04" in collect_participants(init_layout(tiny_bids))


@pytest.mark.parametrize(
    ("label", "wanted"), [("02", ["02"]), (["sub-02"], ["02"]), (["02", "01"], ["01", "02"])]
)
def test_a_participant_selection_indexes_only_those_participants(tiny_bids, label, wanted):
    layout = init_layout(tiny_bids, participant_label=label)
    assert sorted(layout.get_subjects()) == wanted
    assert collect_participants(layout, label) == wanted
    assert sorted({image.subject for image in collect_data(layout, label)}) == wanted


def test_a_selection_that_is_not_there_names_the_participants_that_are(tiny_bids):
    layout = init_layout(tiny_bids, participant_label=["05", "01"])
    with pytest.raises(BIDSError, match=r"sub-05 not found .*: sub-01, sub-02\)"):
        collect_participants(layout, ["05", "01"])


@pytest.mark.parametrize("label", [["01"], ["sub-01"], ["sub-01", "01"]])
def test_participant_label_prefix_is_optional(tiny_bids, label):
    layout = init_layout(tiny_bids)
    assert collect_participants(layout, label) == ["01"]
    assert {image.subject for image in collect_data(layout, label)} == {"01"}


def test_missing_participants(tiny_bids):
    with pytest.raises(BIDSError, match=r"sub-03, sub-05 not found .*: sub-01, sub-02\)"):
        collect_participants(init_layout(tiny_bids), ["sub-01", "05", "03"])


@pytest.mark.parametrize("session", ["2", "ses-2", ["ses-2"]])
def test_session_label(tiny_bids, session):
    images = collect_data(init_layout(tiny_bids), ["01", "02"], session_label=session)
    assert [image.relpath for image in images] == ["sub-01/ses-2/anat/sub-01_ses-2_T1w.nii"]


def test_modalities(tiny_bids):
    images = collect_data(init_layout(tiny_bids), ["01", "02"], modalities=["FLAIR"])
    assert [image.modality for image in images] == ["FLAIR", "FLAIR"]
    with pytest.raises(BIDSError, match="Unknown modalities"):
        collect_data(init_layout(tiny_bids), "01", modalities=["T2w"])


@pytest.mark.parametrize(
    ("filters", "stems"),
    [
        ({"T1w": {"acquisition": "mprage"}}, ["sub-01_ses-1_acq-mprage_ce-gad_rec-norm_T1w"]),
        ({"T1w": {"run": [2, 10]}}, ["sub-01_ses-1_run-2_T1w", "sub-01_ses-1_run-10_T1w"]),
        ({"T1w": {"extension": ".nii"}}, ["sub-01_ses-2_T1w"]),
    ],
)
def test_bids_filters(tiny_bids, filters, stems):
    images = collect_data(init_layout(tiny_bids), "01", modalities=["T1w"], bids_filters=filters)
    assert [image.stem for image in images] == stems


def test_bids_filter_none_selects_files_without_entity(tiny_bids):
    filters = {"T1w": {"run": None, "acquisition": None}, "FLAIR": {"acquisition": "x"}}
    images = collect_data(init_layout(tiny_bids), "01", bids_filters=filters)
    assert [image.stem for image in images] == ["sub-01_ses-2_T1w"]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"T1w": {"subject": "02"}}, "may not set subject"),
        ({"FLAIR": {"session": "2", "suffix": "T2w"}}, "may not set session, suffix"),
        ({"T2w": {}}, "unknown modalities"),
        ({"T1w": ["acquisition"]}, "must be an object"),
        ({"T1w": {"acquisitoin": "mprage"}}, "Did you mean"),
    ],
)
def test_invalid_bids_filters(tiny_bids, filters, message):
    with pytest.raises(BIDSError, match=message):
        collect_data(init_layout(tiny_bids), "01", bids_filters=filters)


def test_duplicate_images_refused(make_bids):
    root = make_bids(["sub-01/anat/sub-01_T1w.nii", "sub-01/anat/sub-01_T1w.nii.gz"])
    with pytest.raises(BIDSError, match="sub_01_T1w stored more than once"):
        collect_data(init_layout(root), "01")


def test_load_bids_filters(tmp_path):
    path = tmp_path / "filters.json"
    path.write_text(json.dumps({"FLAIR": {"acquisition": None}}))
    assert load_bids_filters(path) == {"FLAIR": {"acquisition": None}}

    path.write_text('{"T1w": {"acquisition": "mprage",}}')
    with pytest.raises(BIDSError, match=f"'{path}'.*Expecting property name"):
        load_bids_filters(path)
    path.write_text('{"T1w": {"subject": "01"}}')
    with pytest.raises(BIDSError, match=f"'{path}'.*may not set subject"):
        load_bids_filters(path)
    with pytest.raises(BIDSError, match="Cannot read BIDS filters from .*missing.json"):
        load_bids_filters(tmp_path / "missing.json")


# --- what is not a (raw) BIDS dataset --------------------------------------------------------


def test_not_bids(tmp_path, make_bids):
    with pytest.raises(NotBIDSError, match=f"'{tmp_path / 'nowhere'}' does not exist"):
        init_layout(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotBIDSError, match="is not a directory"):
        init_layout(tmp_path / "file")
    (tmp_path / "plain" / "sub-01" / "anat").mkdir(parents=True)
    for validate in (True, False):
        with pytest.raises(NotBIDSError, match="no dataset_description.json"):
            init_layout(tmp_path / "plain", validate=validate)

    description = {"DatasetType": "derivative", "GeneratedBy": [{"Name": "fMRIPrep"}]}
    derivatives = make_bids(["sub-01/anat/sub-01_T1w.nii.gz"], name="out", description=description)
    with pytest.raises(NotBIDSError, match="BIDS-Derivatives"):
        init_layout(derivatives)


def test_invalid_dataset_description(make_bids):
    root = make_bids(["sub-01/anat/sub-01_T1w.nii.gz"])
    (root / "dataset_description.json").write_text('{"Name": "no version"}')
    with pytest.raises(NotBIDSError, match="not a valid BIDS dataset.*BIDSVersion"):
        init_layout(root)
    assert collect_participants(init_layout(root, validate=False)) == ["01"]


def test_no_participants(make_bids):
    with pytest.raises(BIDSError, match="No participant with an anat/ folder"):
        collect_participants(init_layout(make_bids(["sub-01/func/sub-01_bold.nii.gz"])))


# --- bids-examples ---------------------------------------------------------------------------


def example(name: str) -> Path:
    return BIDS_EXAMPLES / name


@needs_examples
@pytest.mark.parametrize("name", RAW_EXAMPLES)
def test_bids_examples(name):
    """Whatever the dataset, discovery returns anatomical images described consistently."""
    root = example(name)
    before = snapshot(root)
    layout = init_layout(root)
    images = collect_data(layout, collect_participants(layout))
    assert snapshot(root) == before

    assert images
    assert len({image.key for image in images}) == len(images)
    for image in images:
        relpath = Path(image.relpath)
        assert not relpath.is_absolute() and ".." not in relpath.parts
        assert image.path == root / relpath
        assert relpath.parts[0] == f"sub-{image.subject}"
        assert relpath.parent.name == "anat"
        assert relpath.parts[1:-2] == ((f"ses-{image.session}",) if image.session else ())
        assert image.stem.endswith(f"_{image.modality}")
        assert image.key.isidentifier()


@needs_examples
@pytest.mark.parametrize("validate", [True, False])
def test_derivatives_dataset_refused(validate):
    with pytest.raises(NotBIDSError, match="BIDS-Derivatives"):
        init_layout(example("ds000001-fmriprep"), validate=validate)


@needs_examples
def test_ds000117_skips_meg_and_derivatives():
    layout = init_layout(example("ds000117"))
    images = collect_data(layout, collect_participants(layout))
    assert len(images) == 16
    assert {(image.session, image.modality) for image in images} == {("mri", "T1w")}
    assert all(image.entities == {"acq": "mprage"} and image.sidecar for image in images)
    assert collect_data(layout, "01", session_label="meg") == []


@needs_examples
def test_ds114_sessions():
    layout = init_layout(example("ds114"))
    images = collect_data(layout, ["01", "02"])
    assert [(image.subject, image.session) for image in images] == [
        ("01", "retest"),
        ("01", "test"),
        ("02", "retest"),
        ("02", "test"),
    ]
    assert len(collect_data(layout, collect_participants(layout), session_label="test")) == 10


@needs_examples
def test_genetics_ukbb_flair():
    layout = init_layout(example("genetics_ukbb"))
    participants = collect_participants(layout)
    flair = collect_data(layout, participants, modalities=["FLAIR"])
    assert [image.subject for image in flair] == participants
    t1w = collect_data(layout, participants, modalities=["T1w"])
    assert {image.entities["acq"] for image in t1w} == {"MPRAGE"}


@needs_examples
def test_ds004332_flair_entities():
    layout = init_layout(example("ds004332"))
    flair = collect_data(layout, "02", modalities=["FLAIR"])
    assert len(flair) == 6
    assert flair[0].entities == {"task": "nodding", "acq": "flairPMCoff", "rec": "wore"}
    assert flair[0].relpath == "sub-02/anat/sub-02_task-nodding_acq-flairPMCoff_rec-wore_FLAIR.nii"
    assert flair[0].sidecar is not None
    filtered = collect_data(
        layout, "02", modalities=["FLAIR"], bids_filters={"FLAIR": {"task": "still"}}
    )
    assert len(filtered) == 2


@needs_examples
def test_synthetic_ignores_derivatives():
    layout = init_layout(example("synthetic"))
    images = collect_data(layout, collect_participants(layout))
    assert len(images) == 10
    assert not any("derivatives" in image.relpath for image in images)


# --- scale -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_thousand_participants(make_bids):
    files = []
    for index in range(1, 1001):
        modalities = ["T1w", "FLAIR"] if index % 3 == 0 else ["T1w"]
        files += [
            f"sub-{index:04d}/anat/sub-{index:04d}_{modality}{extension}"
            for modality in modalities
            for extension in (".nii.gz", ".json")
        ]
    root = make_bids(files)

    start = time.perf_counter()
    layout = init_layout(root)
    images = collect_data(layout, collect_participants(layout))
    elapsed = time.perf_counter() - start
    print(f"Indexed 1,000 participants and collected {len(images)} images in {elapsed:.1f} s")

    assert len(images) == 1333
    assert images[0].relpath == "sub-0001/anat/sub-0001_T1w.nii.gz"
    assert elapsed < 60


DERIVATIVE_FILES = [
    "sub-01/anat/sub-01_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz",
    "sub-01/anat/sub-01_space-MNI152NLin2009cAsym_res-2_desc-preproc_T1w.nii.gz",
    "sub-01/anat/sub-01_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz",
    "sub-01/anat/sub-01_desc-preproc_T1w.nii.gz",  # native space: not registered
    "sub-01/anat/sub-01_space-MNI152NLin6Asym_desc-preproc_T1w.nii.gz",  # another template
    "sub-01/anat/sub-01_space-MNI152NLin2009cAsym_desc-preproc_T1w.json",
    "sub-02/ses-1/anat/sub-02_ses-1_acq-fast_space-MNI152NLin2009cSym_desc-preproc_FLAIR.nii",
    "sub-02/figures/sub-02_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz",  # not anat/
]


@pytest.fixture
def fmriprep_dir(tmp_path: Path) -> Path:
    root = tmp_path / "fmriprep"
    for name in DERIVATIVE_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    return root


def test_collect_derivatives_finds_template_space_anatomicals(fmriprep_dir):
    images = collect_derivatives(fmriprep_dir)
    assert [image.relpath for image in images] == [
        "sub-01/anat/sub-01_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz",
        "sub-01/anat/sub-01_space-MNI152NLin2009cAsym_res-2_desc-preproc_T1w.nii.gz",
        "sub-02/ses-1/anat/sub-02_ses-1_acq-fast_space-MNI152NLin2009cSym_desc-preproc_FLAIR.nii",
    ]
    first, _, flair = images
    assert (first.subject, first.session, first.modality) == ("01", None, "T1w")
    assert first.dataset == "fmriprep" and first.sidecar is not None
    assert (flair.subject, flair.session, flair.modality) == ("02", "1", "FLAIR")
    assert flair.entities["space"] == "MNI152NLin2009cSym"
    # Keys tell a derivative from a raw image of the same name.
    assert first.key.startswith("fmriprep_sub_01_")


def test_collect_derivatives_selects_participants_and_modalities(fmriprep_dir):
    assert [image.subject for image in collect_derivatives(fmriprep_dir, ["02"])] == ["02"]
    assert collect_derivatives(fmriprep_dir, modalities=["FLAIR"])[0].modality == "FLAIR"
    with pytest.raises(BIDSError, match="does not exist"):
        collect_derivatives(fmriprep_dir / "missing")


@pytest.mark.skipif(not (BIDS_EXAMPLES / "ds000001-fmriprep").is_dir(), reason="no examples")
def test_collect_derivatives_of_a_real_fmriprep_layout():
    images = collect_derivatives(BIDS_EXAMPLES / "ds000001-fmriprep")
    assert images
    assert all("_space-MNI152NLin2009cAsym_" in image.relpath for image in images)
    assert all(image.dataset == "ds000001-fmriprep" for image in images)
