"""The methods text: built from what ran, its citations resolved, the dataset's names escaped."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from bidsqc.data import MODELS_DIR
from bidsqc.reports.methods import COREGISTRATION_COLUMN, methods_markdown, write_methods


def row(relpath: str, dataset: str = "raw", status: str = "ok", **columns: float) -> dict:
    """The columns of a QC row that the methods read."""
    return {
        "filename": relpath,
        "participant_id": relpath.split("/")[0],
        "modality": "FLAIR" if "FLAIR" in relpath else "T1w",
        "dataset": dataset,
        "status": status,
        COREGISTRATION_COLUMN: math.nan,
    } | columns


T1W = row("sub-01/anat/sub-01_T1w.nii.gz")
FLAIR = row("sub-02/anat/sub-02_FLAIR.nii.gz", status="failed")
COREGISTERED_FLAIR = row("sub-01/anat/sub-01_FLAIR.nii.gz", **{COREGISTRATION_COLUMN: 0.4})


def test_the_text_says_what_ran() -> None:
    text = methods_markdown([T1W, FLAIR], device="cpu")
    assert "1 T1-weighted image and 1 FLAIR image of 2 participants" in text
    assert "1 of 2 were processed" in text
    for name in ("motion", "registration", "artefact"):
        card = json.loads((MODELS_DIR / f"{name}.json").read_text())
        assert card["weights"]["sha256"][:12] in text
    assert "co-registered" not in text and "derivatives datasets" not in text

    with_coregistration = methods_markdown([T1W, COREGISTERED_FLAIR], device="cpu")
    assert "1 FLAIR image was co-registered rigidly" in with_coregistration
    assert "2 of 2 were processed" in with_coregistration
    assert "deepbet" in text
    assert "own white matter" in text


def test_derivatives_alone_run_the_registration_network_only() -> None:
    derived = [row("sub-01/anat/sub-01_space-MNI_desc-preproc_T1w.nii.gz", "fmriprep")]
    text = methods_markdown(derived, device="cpu")
    assert "1 template-space images of fmriprep" in text
    assert "without being registered again" in text
    assert "The registration network" in text and "The motion network" not in text
    assert "own white matter" not in text


def test_written_files_cite_every_reference_once(tmp_path: Path) -> None:
    derived = [row("sub-03/anat/sub-03_space-MNI_T1w.nii.gz", "<script>x</script>")]
    page = write_methods(
        tmp_path,
        [T1W, FLAIR, COREGISTERED_FLAIR, *derived],
        device="cpu",
        generated_by="bidsqc test",
    )
    assert page == tmp_path / "logs" / "CITATION.html"
    markdown = (tmp_path / "logs" / "CITATION.md").read_text()
    bib = (tmp_path / "logs" / "CITATION.bib").read_text()
    cited = {key for group in re.findall(r"\[@([^\]]+)\]", markdown) for key in group.split("; @")}
    assert cited == set(re.findall(r"^@\w+\{([^,]+),", bib, flags=re.MULTILINE))
    html = page.read_text()
    assert "<script>x" not in html and "&lt;script&gt;x" in html
    numbered = re.findall(r'<li id="ref-([\w-]+)" value="(\d+)"', html)
    assert sorted(int(number) for _, number in numbered) == list(range(1, len(cited) + 1))
    assert all(f'href="#ref-{key}"' in html for key, _ in numbered)
