"""The methods text: built from what ran, its citations resolved, the dataset's names escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bidsqc.data import MODELS_DIR
from bidsqc.discovery import AnatImage
from bidsqc.reports.methods import methods_markdown, write_methods


def image(relpath: str, dataset: str = "raw") -> AnatImage:
    subject = relpath.split("/")[0].removeprefix("sub-")
    modality = "FLAIR" if "FLAIR" in relpath else "T1w"
    return AnatImage(Path("/data") / relpath, relpath, subject, None, modality, {}, None, dataset)


RAW = [image("sub-01/anat/sub-01_T1w.nii.gz"), image("sub-02/anat/sub-02_FLAIR.nii.gz")]


def test_the_text_says_what_ran() -> None:
    text = methods_markdown(RAW, n_failed=1, n_coregistered=0, device="cpu")
    assert "1 T1-weighted image and 1 FLAIR image of 2 participants" in text
    assert "1 of 2 were processed" in text
    for name in ("motion", "registration", "artefact"):
        card = json.loads((MODELS_DIR / f"{name}.json").read_text())
        assert card["weights"]["sha256"][:12] in text
    assert "co-registered" not in text and "derivatives datasets" not in text

    with_coregistration = methods_markdown(RAW, n_failed=0, n_coregistered=1, device="cpu")
    assert "1 FLAIR image was co-registered rigidly" in with_coregistration


def test_derivatives_alone_run_the_registration_network_only() -> None:
    derived = [image("sub-01/anat/sub-01_space-MNI_desc-preproc_T1w.nii.gz", "fmriprep")]
    text = methods_markdown(derived, n_failed=0, n_coregistered=0, device="cpu")
    assert "1 template-space images of fmriprep" in text
    assert "without being registered again" in text
    assert "The registration network" in text and "The motion network" not in text


def test_written_files_cite_every_reference_once(tmp_path: Path) -> None:
    derived = [image("sub-03/anat/sub-03_space-MNI_T1w.nii.gz", "<script>x</script>")]
    page = write_methods(
        tmp_path,
        RAW + derived,
        n_failed=0,
        n_coregistered=1,
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
