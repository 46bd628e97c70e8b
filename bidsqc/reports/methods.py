"""The methods paragraph of a run, as fMRIPrep writes it: ``logs/CITATION.md``, ``.html``, ``.bib``.

The text builds itself from the QC rows of every participant in the output directory (so that the
participant jobs of an array, each writing it in turn under the directory's lock, leave one text
about all of them): the images (raw and from derivatives datasets), the FLAIR images
co-registered to a T1w, the networks that read them (from their model cards:
training date, weights, validation scores, calibrated thresholds), the template, the device and
the versions of the software. Citations are ``[@key]`` of ``data/boilerplate.bib``; the BibTeX
file holds the cited entries, the HTML numbers them.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bidsqc import __version__
from bidsqc.data import NETWORKS, TEMPLATE_NAME, network_weights, read_model_card
from bidsqc.discovery import RAW_DATASET
from bidsqc.outputs.files import write_text_atomically
from bidsqc.reports import is_finite, render_html
from bidsqc.validity import MIN_BRAIN_COVERAGE

__all__ = ["BIBLIOGRAPHY", "methods_markdown", "write_methods"]

#: A FLAIR row with this column was co-registered to its session's T1w.
COREGISTRATION_COLUMN = "registration_error_to_t1w_mm"
#: The references the methods may cite, in BibTeX.
BIBLIOGRAPHY = Path(__file__).parents[1] / "data" / "boilerplate.bib"

#: A citation in the Markdown: ``[@key]`` or ``[@a; @b]``.
_CITATION = re.compile(r"\[(@[^\]]+)\]")
#: The LaTeX accents of ``boilerplate.bib``, as characters.
_ACCENTED = {'"o': "ö", "'e": "é", "'c": "ć", "'i": "í"}
#: What each bundled network does, and the validation scores its paragraph quotes.
_NETWORKS = {
    "motion": (
        "a 3D CNN (Conv5FC3-style encoder [@loizillon2023], SFCN-style output [@sfcn]) trained "
        "on simulated rigid motion (k-space segments acquired at different poses [@torchio]) "
        "graded each registered image none, mild or severe and estimated its motion as a "
        "distribution over the Jenkinson RMS deviation in mm [@jenkinson2002; @bricout]",
        {"motion_ba": "balanced accuracy of motion", "mm_spearman": "Spearman of the mm"},
    ),
    "registration": (
        "a network trained on synthetic image pairs under known affine misalignments "
        "[@li2022] judged whether each registered image lay on the template, and by how many "
        "mm (Jenkinson RMS [@jenkinson2002]) it did not",
        {"auc": "AUC of misregistration", "mm_spearman": "Spearman of the mm"},
    ),
    "artefact": (
        "a network reading 64 mm tiles of the 1 mm head box [@miqa], trained on simulated "
        "artefacts, gave the probability of ghosting, spikes, intensity inhomogeneity, noise "
        "and blur, and a 0-10 quality score, averaged over the tiles that hold brain",
        {"quality_r2": "R² of the quality score", "auc_ghosting": "AUC of ghosting"},
    ),
}


def write_methods(
    output_dir: Path,
    rows: Sequence[Mapping[str, Any]],
    *,
    device: str,
    generated_by: str,
    models_dir: Path | None = None,
) -> Path:
    """Write the methods of the QC ``rows`` (:func:`bidsqc.outputs.tables.qc_row`) into
    ``output_dir/logs``.

    Returns the HTML file; ``CITATION.md`` and ``CITATION.bib`` lie beside it.
    """
    logs = Path(output_dir) / "logs"
    markdown = methods_markdown(rows, device=device, models_dir=models_dir)
    keys = _cited_keys(markdown)
    entries = _bibtex_entries()
    write_text_atomically(logs / "CITATION.md", markdown)
    write_text_atomically(logs / "CITATION.bib", "\n\n".join(entries[key] for key in keys) + "\n")
    numbers = {key: index for index, key in enumerate(keys, start=1)}
    return render_html(
        "methods.html",
        logs / "CITATION.html",
        paragraphs=[_paragraph_html(p, numbers) for p in markdown.split("\n\n")[1:]],
        references=[(numbers[key], key, _reference_text(entries[key])) for key in keys],
        generated_by=generated_by,
    )


def methods_markdown(
    rows: Sequence[Mapping[str, Any]],
    *,
    device: str,
    models_dir: Path | None = None,
) -> str:
    """The methods of the QC ``rows`` as Markdown: a title, then one paragraph per step that
    ran (the networks of ``models_dir``, ``--models-dir``, in place of the bundled ones they
    replace)."""
    raw = [row for row in rows if row["dataset"] == RAW_DATASET]
    derived = Counter(row["dataset"] for row in rows if row["dataset"] != RAW_DATASET)
    modalities = Counter(row["modality"] for row in raw)
    subjects = {row["participant_id"] for row in rows}
    n_processed = sum(row["status"] == "ok" for row in rows)
    n_coregistered = sum(is_finite(row.get(COREGISTRATION_COLUMN)) for row in raw)
    paragraphs = [
        "# Methods",
        f"Quality control was performed with *bidsqc* {__version__}, whose workflows run on "
        f"Nipype {_version('nipype')} [@nipype1]. PyBIDS {_version('pybids')} [@pybids] found "
        f"{_count(modalities['T1w'], 'T1-weighted image')} and "
        f"{_count(modalities['FLAIR'], 'FLAIR image')} of {_count(len(subjects), 'participant')}"
        + (
            ", and "
            + ", ".join(f"{n} template-space images of {name}" for name, n in derived.items())
            if derived
            else ""
        )
        + f"; {n_processed} of {len(rows)} were processed.",
    ]
    if raw:
        paragraphs.append(
            "Each image was checked (readable, 3D, finite, plausible voxel sizes), reoriented to "
            "RAS and resampled to 2 mm isotropic voxels; its brain was extracted with the "
            f"localisation network of deepbet {_version('deepbet')} [@deepbet] and registered "
            f"affinely to the brain of the {TEMPLATE_NAME} template [@mni152nlin2009] with ANTs "
            f"(antspyx {_version('antspyx')}) [@ants], on one thread so that a rerun gives the "
            "same transform, the alignment refined with the metric restricted to the dilated "
            "template brain."
        )
    if derived:
        paragraphs.append(
            "Images of derivatives datasets were resampled onto the template grid without "
            "being registered again, so that their normalisation was judged as it was."
        )
    measures = (
        "Classical image-quality measures [@mriqc] were computed on the template grid with "
        "the template's tissue masks, including the N4 bias field [@n4] and the residual "
        "misregistration (Jenkinson RMS of a new rigid registration [@jenkinson2002])."
    )
    if raw:
        measures += (
            " The signal-to-noise ratio of the subject's own white matter was read on the "
            "image resampled once onto a 1 mm template-space grid, as the median over 16 mm "
            "blocks, where head motion leaves its ringing. Scans whose field of view held "
            f"less than {MIN_BRAIN_COVERAGE:.0%} of the template brain were not assessed."
        )
    paragraphs.append(measures)
    for name in NETWORKS if raw else ("registration",):
        paragraphs.append(_network_paragraph(name, device, network_weights(name, models_dir)))
    if raw and models_dir is not None and (models_dir / "quality.pt").is_file():
        paragraphs.append(_network_paragraph("quality", device, models_dir / "quality.pt"))
    if n_coregistered:
        paragraphs.append(
            f"{_count(n_coregistered, 'FLAIR image')} "
            f"{'was' if n_coregistered == 1 else 'were'} co-registered rigidly to the T1w of "
            "their session and reached the template through the T1w's transform; the "
            "registration-QC network judged each FLAIR/T1w pair on the template grid."
        )
    return "\n\n".join(paragraphs) + "\n"


def _network_paragraph(name: str, device: str, weights: Path) -> str:
    card = read_model_card(weights)
    if "method" in card:
        return _fine_tuned_paragraph(name, device, card)
    what, scores = _NETWORKS[name]
    metrics = card.get("validation_metrics", {})
    quoted = ", ".join(
        f"{label} {metrics[key]:.2f}" for key, label in scores.items() if key in metrics
    )
    thresholds = card.get("calibration", {}).get("thresholds", {})
    calibrated = (
        "; its decision thresholds were calibrated on its validation images ("
        + ", ".join(f"`{column}` {value:.2f}" for column, value in thresholds.items())
        + ")"
        if thresholds
        else ""
    )
    return (
        f"The {name} network ({card['architecture']}, PyTorch {_version('torch')}, device "
        f"{device}): {what}. Its weights (SHA-256 {card['weights']['sha256'][:12]}) were "
        f"trained on {card['date'][:10]} on {len(card['training_files'])} files, from "
        f"`bidsqc-train {card['task']}`; on its validation images, {quoted}{calibrated}."
    )


def _fine_tuned_paragraph(name: str, device: str, card: dict) -> str:
    """A network of ``bidsqc-finetune``: its base, labels and cross-validation."""
    labels = card["labels"]
    method = {
        "head": "its encoder frozen and its fully connected layers trained again [@loizillon2023]",
        "embedding": "a linear probe trained on its frozen encoder's embeddings [@bricout]",
    }[card["method"]]
    classes = ", ".join(f"{n} {rating}" for rating, n in labels["counts"].items())
    cv = card["cross_validation"]
    if cv:
        pooled = cv["pooled"]
        versus = ", ".join(f"{model} {value:.2f}" for model, value in pooled.items())
        tested = (
            "In cross-validation with folds grouped by participant, its balanced accuracy was "
            f"{pooled['fine-tuned']:.2f} (pooled; {versus})."
        )
    else:
        tested = "It was not cross-validated: its labels came from one participant."
    return (
        f"The {name} network ({card['architecture']}, PyTorch {_version('torch')}, device "
        f"{device}; weights SHA-256 {card['weights']['sha256'][:12]}) was fine-tuned on "
        f"{card['date'][:10]} with `bidsqc-finetune --task {card['task']}` from the network of "
        f"SHA-256 {card['base_weights']['sha256'][:12]}, {method}, on the site's own labels: "
        f"{labels['images']} images of {labels['participants']} participants ({classes}; "
        f"{labels['format']}). {tested}"
    )


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(version unknown)"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cited_keys(markdown: str) -> list[str]:
    """Every key cited, once, in order of first citation."""
    groups = _CITATION.findall(markdown)
    return list(dict.fromkeys(key for group in groups for key in _keys(group)))


def _keys(group: str) -> list[str]:
    """The keys of one citation, ``@a; @b`` of ``[@a; @b]``."""
    return [key.strip().removeprefix("@") for key in group.split(";")]


def _bibtex_entries() -> dict[str, str]:
    text = BIBLIOGRAPHY.read_text(encoding="utf-8")
    entries = [entry.strip() for entry in re.split(r"\n(?=@)", text) if entry.strip()]
    return {re.match(r"@\w+\{([^,]+),", entry).group(1): entry for entry in entries}


def _reference_text(entry: str) -> str:
    """Authors (year). Title. Venue. DOI, read off a BibTeX entry of ``boilerplate.bib``."""
    fields = dict(re.findall(r"^\s*(\w+) = \{(.*)\},?$", entry, flags=re.MULTILINE))
    venue = fields.get("journal") or fields.get("booktitle") or fields.get("note", "")
    parts = [
        f"{fields['author']} ({fields.get('year', 'n.d.')})",
        fields["title"],
        venue,
        f"doi:{fields['doi']}" if "doi" in fields else "",
    ]
    text = ". ".join(part for part in parts if part) + "."
    return re.sub(
        r"\{\\(.)(\w)\}", lambda m: _ACCENTED.get(m.group(1) + m.group(2), m.group(2)), text
    )


def _paragraph_html(paragraph: str, numbers: dict[str, int]) -> str:
    """One Markdown paragraph of :func:`methods_markdown` as HTML, citations numbered."""
    text = html.escape(paragraph, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)

    def cite(match: re.Match) -> str:
        links = (f'<a href="#ref-{key}">{numbers[key]}</a>' for key in _keys(match.group(1)))
        return f"[{', '.join(links)}]"

    return _CITATION.sub(cite, text)
