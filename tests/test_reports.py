"""Tests of the figures, the participant report and the group report."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from matplotlib.colors import to_rgb
from PIL import Image

from bidsqc.decisions import DEFAULT_THRESHOLDS, Threshold
from bidsqc.measures.catalogue import MeasureInfo
from bidsqc.measures.robust import robust_zscores
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.reports import format_value, subject_report_href
from bidsqc.reports.figures import (
    OUTLINE_COLOR,
    plot_mosaic,
    plot_motion_distribution,
    strip_layout,
)
from bidsqc.reports.group import protocols, render_group_report
from bidsqc.reports.individual import FIGURE_CAPTIONS, render_subject_report

INJECTION = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
MEASURES = {
    "cjv": MeasureInfo(
        name="Coefficient of joint variation",
        description="Overlap of grey- and white-matter intensities.",
        units="",
        better="lower",
        reference="Ganzetti et al. 2016",
    ),
    "snr": MeasureInfo(
        name="Signal-to-noise ratio",
        description="Mean tissue intensity over the noise.",
        units="",
        better="higher",
    ),
}


def ball(zooms: tuple[float, float, float], fov: float = 160.0) -> nb.Nifti1Image:
    """A noisy ball of 60 mm radius centred in a ``fov`` mm cube, on a grid of ``zooms``."""
    shape = [round(fov / zoom) for zoom in zooms]
    mm = np.ix_(
        *[(np.arange(n) + 0.5) * zoom - fov / 2 for n, zoom in zip(shape, zooms, strict=True)]
    )
    inside = sum(axis**2 for axis in mm) < 60.0**2
    noise = np.random.default_rng(0).normal(0, 5, shape)
    return nb.Nifti1Image((inside * 100 + np.abs(noise)).astype(np.float32), np.diag([*zooms, 1]))


def outline_pixels(path: Path) -> int:
    """How many pixels of a PNG have the outline colour."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    return int((np.abs(rgb - np.array(to_rgb(OUTLINE_COLOR)) * 255).max(axis=-1) < 8).sum())


@pytest.mark.parametrize(
    "img",
    [
        ball((2.0, 2.0, 2.0)),
        ball((0.7, 0.7, 4.0)),
        nb.Nifti1Image(np.full((20, 24, 16), 7.0, dtype=np.float32), np.eye(4)),
    ],
    ids=["isotropic", "thick-slice", "constant"],
)
def test_mosaic_writes_small_png(img: nb.Nifti1Image, tmp_path: Path) -> None:
    out = plot_mosaic(img, tmp_path / "mosaic.png", title="sub-01_T1w")
    assert out == tmp_path / "mosaic.png"
    with Image.open(out) as png:
        assert png.format == "PNG"
        assert png.width >= 600
    assert out.stat().st_size < 100_000


def test_mosaic_keeps_physical_proportions(tmp_path: Path) -> None:
    """The same ball on 2 mm and on 0.7 x 0.7 x 4 mm voxels gives the same picture size."""
    iso = Image.open(plot_mosaic(ball((2.0, 2.0, 2.0)), tmp_path / "iso.png"))
    thick = Image.open(plot_mosaic(ball((0.7, 0.7, 4.0)), tmp_path / "thick.png"))
    assert iso.size[0] == thick.size[0]
    assert abs(iso.size[1] - thick.size[1]) <= 0.05 * iso.size[1]


def test_mosaic_draws_outline_on_image_grid(tmp_path: Path) -> None:
    img = ball((2.0, 2.0, 2.0))
    mask = nb.Nifti1Image((img.get_fdata() > 50).astype(np.uint8), img.affine)
    assert outline_pixels(plot_mosaic(img, tmp_path / "plain.png")) == 0
    assert outline_pixels(plot_mosaic(img, tmp_path / "outline.png", outline=mask)) > 500
    shifted = nb.Nifti1Image(mask.dataobj, img.affine @ np.diag([2.0, 1, 1, 1]))
    with pytest.raises(ValueError, match="grid"):
        plot_mosaic(img, tmp_path / "bad.png", outline=shifted)


def test_robust_zscores_known_values() -> None:
    # median 3, MAD 1
    z = robust_zscores([1.0, 2.0, 3.0, 4.0, 100.0, np.nan])
    np.testing.assert_allclose(z[:5], np.array([-2, -1, 0, 1, 97]) / 1.4826)
    assert np.isnan(z[5])


def test_robust_zscores_zero_mad() -> None:
    # MAD = 0: mean absolute deviation from the median, 4 / 7, takes over
    z = robust_zscores([5, 5, 5, 5, 5, 5, 9])
    np.testing.assert_allclose(z, [0, 0, 0, 0, 0, 0, 4 / (1.2533 * 4 / 7)])
    np.testing.assert_array_equal(robust_zscores([2.0, 2.0, np.nan]), [0.0, 0.0, np.nan])
    assert np.isnan(robust_zscores([np.nan, np.nan])).all()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.41234, "0.4123"),
        (1234.56, "1235"),
        (123456.0, "1.235e+05"),
        (3, "3"),
        (None, "n/a"),
        (float("nan"), "n/a"),
        ("mild", "mild"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_strip_layout() -> None:
    layout = strip_layout([1.0, 2.0, np.nan, 3.0])
    assert layout.points[2] is None
    xs = [point[0] for point in layout.points if point]
    assert layout.xlim[0] < xs[0] < xs[1] < xs[2] < layout.xlim[1]
    assert layout.box[2] == xs[1]  # the median
    assert strip_layout([np.nan]) is None


def test_group_links_are_relative_and_inert() -> None:
    assert subject_report_href("sub-01", "sub-01/anat/sub-01_T1w.nii.gz") == (
        "sub-01.html#sub-01_T1w"
    )
    assert ":" not in subject_report_href("javascript:alert(1)", "x.nii.gz")


def row(filename: str, **values: object) -> dict:
    participant, *entities = Path(filename).name.split("_")
    session = next((e for e in entities if e.startswith("ses-")), "n/a")
    return {
        "filename": filename,
        "participant_id": participant,
        "session_id": session,
        "modality": "T1w",
        "status": "ok",
        "error": "n/a",
        "dataset": "raw",
        "decision": "pass",
        "reasons": "n/a",
        **values,
    }


def failed_row(filename: str, error: str) -> dict:
    return row(
        filename,
        status="failed",
        error=error,
        decision="fail",
        reasons="fail: not processed",
        cjv=None,
        snr=None,
        p_motion=None,
    )


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "figure.png"
    Image.new("L", (8, 4), 128).save(path)
    return path


def test_subject_report(tmp_path: Path, png: Path) -> None:
    rows = [
        row("sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", cjv=0.4567, snr=12.34, p_motion=0.25),
        row("sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz", cjv=0.5, snr=10.0, p_motion=0.5),
        failed_row("sub-01/ses-3/anat/sub-01_ses-3_T1w.nii.gz", "registration diverged"),
    ]
    figures = {
        rows[0]["filename"]: {"raw": png, "registered": png},
        rows[1]["filename"]: {"raw": png, "registered": tmp_path / "missing.png"},
    }
    out = render_subject_report(
        "sub-01",
        rows,
        figures,
        MEASURES,
        tmp_path / "sub-01.html",
        generated_by="bidsqc test",
        dataset="test",
    )
    html = out.read_text()
    for image in rows:
        assert image["filename"] in html
        assert f'href="#{Path(image["filename"]).name.split(".")[0]}"' in html
    assert "registration diverged" in html
    assert html.count('class="alert"') == 1
    for info in MEASURES.values():
        assert info.description in html
    assert "Ganzetti et al. 2016" in html
    assert "p_motion" in html  # a column without a description is still shown
    assert "0.4567" in html and "12.34" in html
    embedded = f"data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}"
    assert html.count(embedded) == 3  # the missing file is left out
    assert "bidsqc test" in html
    assert not re.search(r"(src|href)=\"https?:", html)


def test_motion_distribution_plot(tmp_path: Path) -> None:
    centres = np.arange(50) * 0.5
    probabilities = np.exp(-0.5 * (centres - 7.0) ** 2)
    probabilities /= probabilities.sum()
    out = plot_motion_distribution(
        centres, probabilities, (0.1, 0.8, 0.1), (4.5, 11.7), tmp_path / "m.png"
    )
    with Image.open(out) as image:
        assert image.size == (800, 240)
        assert np.ptp(np.asarray(image.convert("L"))) > 100


def test_subject_report_shows_the_motion_grade(tmp_path: Path) -> None:
    graded = {
        **row("sub-01/anat/sub-01_run-1_T1w.nii.gz", cjv=0.5, snr=10.0),
        "motion_grade": 1,
        "p_motion_none": 0.1,
        "p_motion_mild": 0.85,
        "p_motion_severe": 0.05,
        "motion_mm": 6.25,
    }
    html = render_subject_report(
        "sub-01", [graded], {}, MEASURES, tmp_path / "s.html", generated_by="x", dataset="test"
    ).read_text()
    assert "motion: mild (p = 0.8500), 6.250 mm" in html


def test_reports_escape_dataset_text(tmp_path: Path, png: Path) -> None:
    filename = f"sub-01/anat/sub-01_{INJECTION}_T1w.nii.gz"
    rows = [{**failed_row(filename, INJECTION), "participant_id": INJECTION}]
    subject = render_subject_report(
        INJECTION,
        rows,
        {filename: {"raw": png}},
        MEASURES,
        tmp_path / "s.html",
        generated_by="x",
        dataset="test",
    ).read_text()
    group = render_group_report(
        pd.DataFrame(rows), "T1w", MEASURES, tmp_path / "g.html", generated_by="x", dataset="test"
    ).read_text()
    table = pd.DataFrame([{**row(filename, dataset=INJECTION), "cjv": 0.4}] * 5)
    by_protocol = render_group_report(
        table, "T1w", MEASURES, tmp_path / "p.html", generated_by="x", dataset="test"
    ).read_text()
    for html in (subject, group, by_protocol):
        assert INJECTION not in html
        assert ESCAPED in html


def test_group_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(42)
    cjv, snr, p_motion = rng.normal(0.5, 0.02, 20), rng.normal(12, 1, 20), rng.uniform(0, 1, 20)
    cjv[4] = np.median(cjv) + 10 * 1.4826 * np.median(np.abs(cjv - np.median(cjv)))  # sub-05
    rows = [
        row(
            f"sub-{i + 1:02d}/anat/sub-{i + 1:02d}_T1w.nii.gz",
            cjv=cjv[i],
            snr=snr[i],
            p_motion=p_motion[i],
        )
        for i in range(20)
    ]
    rows.append(failed_row("sub-21/anat/sub-21_T1w.nii.gz", "no brain found"))
    tsv = tmp_path / "group_T1w.tsv"
    pd.DataFrame(rows).to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    table = pd.read_csv(tsv, sep="\t")

    html = render_group_report(
        table,
        "T1w",
        MEASURES,
        tmp_path / "group_T1w.html",
        generated_by="bidsqc test",
        dataset="test",
    ).read_text()
    queue = queue_data(html)
    hrefs = sorted(row["href"] for row in queue["rows"])
    assert hrefs == [f"sub-{i:02d}.html#sub-{i:02d}_T1w" for i in range(1, 22)]
    assert queue["rows"][0]["error"] == "no brain found"  # failures first
    assert "p_motion" in html
    flagged = [
        (row["name"], text) for row in queue["rows"] for text, _, flag in row["cells"] if flag
    ]
    assert flagged == [("sub-05_T1w.nii.gz", format_value(cjv[4]))]
    assert html.count('class="pt flag"') == 1
    assert re.search(r"<b>1</b><span>failed</span>", html)
    assert re.search(r"<b>1</b><span>flagged as outliers</span>", html)
    assert not re.search(r"(src|href)=\"https?:", html)


def queue_data(html: str) -> dict:
    """The review queue's JSON of a group report."""
    start = html.index('<script type="application/json" id="queue-data">')
    return json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])


def test_group_report_flags_nothing_in_a_tiny_group(tmp_path: Path) -> None:
    rows = [row(f"sub-{i}/anat/sub-{i}_T1w.nii.gz", cjv=v) for i, v in enumerate([0.5, 0.51, 9.0])]
    html = render_group_report(
        pd.DataFrame(rows),
        "T1w",
        MEASURES,
        tmp_path / "g.html",
        generated_by="bidsqc test",
        dataset="test",
    ).read_text()
    assert not any(flag for row in queue_data(html)["rows"] for *_, flag in row["cells"])
    assert re.search(r"<b>0</b><span>flagged as outliers</span>", html)


def test_protocols_are_told_apart_by_what_the_row_says() -> None:
    rows = [
        row("sub-01/anat/sub-01_T1w.nii.gz", acquisition="3D", in_plane_mm=0.94, slice_mm=1.2),
        row("sub-02/anat/sub-02_T1w.nii.gz", acquisition="3D", in_plane_mm=1.0, slice_mm=1.25),
        row(
            "sub-03/anat/sub-03_acq-fast_T1w.nii.gz",
            acquisition="3D",
            in_plane_mm=1.0,
            slice_mm=1.2,
        ),
        row("sub-04/anat/sub-04_T1w.nii.gz", acquisition="n/a", in_plane_mm=0.45, slice_mm=6.0),
        row("sub-05/anat/sub-05_T1w.nii.gz", dataset="fmriprep", acquisition="n/a"),
        row("sub-06/anat/sub-06_T1w.nii.gz", scanner="GE 1.5 T", in_plane_mm=1, slice_mm=1.2),
    ]
    assert protocols(pd.DataFrame(rows)).tolist() == [
        "raw, 3D, 1 x 1.25 mm",
        "raw, 3D, 1 x 1.25 mm",
        "raw, 3D, 1 x 1.25 mm",  # acq- may name a condition (MR-ART's headmotion1)
        "raw, 0.5 x 6 mm",
        "fmriprep",
        "raw, GE 1.5 T, 1 x 1.25 mm",
    ]
    # A table of an earlier version, without the geometry columns.
    assert protocols(pd.DataFrame([row("sub-01/anat/sub-01_T1w.nii.gz")])).tolist() == ["raw"]


def test_group_report_flags_outliers_within_their_protocol(tmp_path: Path) -> None:
    """Two scanners' levels of one measure are far apart; the image that is low for its own
    protocol is flagged, and neither protocol's ordinary images are, although pooled the
    outlier would sit between the two."""
    rng = np.random.default_rng(7)
    fine = [
        row(f"sub-a{i}/anat/sub-a{i}_T1w.nii.gz", in_plane_mm=1.0, slice_mm=1.0, snr_wm_local=v)
        for i, v in enumerate(rng.normal(40, 1, 10))
    ]
    coarse = [
        row(f"sub-b{i}/anat/sub-b{i}_T1w.nii.gz", in_plane_mm=2.0, slice_mm=2.0, snr_wm_local=v)
        for i, v in enumerate(rng.normal(15, 1, 10))
    ]
    fine[3]["snr_wm_local"] = 30.0
    few = [
        row(f"sub-c{i}/anat/sub-c{i}_T1w.nii.gz", in_plane_mm=0.5, slice_mm=5.0, snr_wm_local=v)
        for i, v in enumerate([10.0, 10.5, 90.0])
    ]
    table = pd.DataFrame(fine + coarse + few)
    pooled = robust_zscores(table["snr_wm_local"])
    assert abs(pooled[3]) < 3  # what a pooled comparison would miss

    html = render_group_report(
        table, "T1w", MEASURES, tmp_path / "g.html", generated_by="x", dataset="test"
    ).read_text()
    flagged = [row["name"] for row in queue_data(html)["rows"] if row["flags"]]
    assert flagged == ["sub-a3_T1w.nii.gz"]
    for label, count in (("raw, 1 x 1 mm", 10), ("raw, 2 x 2 mm", 10), ("raw, 0.5 x 5 mm", 3)):
        assert f"{label}: {count}</span>" in html


def test_group_report_puts_failures_then_reviews_first(tmp_path):
    rows = [
        row("sub-01/anat/sub-01_T1w.nii.gz", cjv=0.4),
        row("sub-02/anat/sub-02_T1w.nii.gz", cjv=0.4, decision="review", reasons="review: r2"),
        row("sub-03/anat/sub-03_T1w.nii.gz", cjv=0.4, decision="fail", reasons="fail: f3"),
        row("sub-04/anat/sub-04_T1w.nii.gz", cjv=0.4, decision="review", reasons="review: r4"),
    ]
    out = render_group_report(
        pd.DataFrame(rows), "T1w", MEASURES, tmp_path / "g.html", generated_by="x", dataset="test"
    )
    html = out.read_text()
    attention = html[html.index("Needs a look") : html.index("Distributions")]
    assert (
        attention.index("fail: f3") < attention.index("review: r2") < attention.index("review: r4")
    )
    assert "sub-01_T1w" not in attention
    assert "<b>1</b><span>pass</span>" in html and "<b>2</b><span>to review</span>" in html


def artefact_row(filename: str, quality: float, **probabilities: float) -> dict:
    """A row with the artefact network's columns: every probability 0.1 unless given."""
    values = dict.fromkeys(ARTEFACT_PROBABILITY_COLUMNS.values(), 0.1) | probabilities
    return row(filename, cjv=0.5, snr=10.0, quality_score=quality, **values)


def test_subject_report_shows_the_quality_chip(tmp_path: Path) -> None:
    rows = [
        artefact_row(
            "sub-01/anat/sub-01_run-1_T1w.nii.gz",
            4.2,
            p_noise=0.8,
            p_ghosting=DEFAULT_THRESHOLDS["p_ghosting"].review,
        ),
        artefact_row(
            "sub-01/anat/sub-01_run-2_T1w.nii.gz",
            9.0,
            p_blur=DEFAULT_THRESHOLDS["p_blur"].review - 0.01,
        ),
        artefact_row(
            "sub-01/anat/sub-01_run-3_T1w.nii.gz",
            float("nan"),
            **dict.fromkeys(ARTEFACT_PROBABILITY_COLUMNS.values(), float("nan")),
        ),
    ]
    html = render_subject_report(
        "sub-01", rows, {}, MEASURES, tmp_path / "s.html", generated_by="x", dataset="test"
    ).read_text()
    # Flagged artefacts are named in the order of the columns, without their "p_".
    assert "quality 4.200/10: ghosting, noise</span>" in html
    assert "quality 9.000/10, no artefact</span>" in html
    # Nothing for the image without the network's answer.
    assert len(re.findall(r">quality [^<]*/10", html)) == 2
    chip = re.search(r'<span class="chip (\w+)" title="artefact network[^>]*>quality 4', html)
    assert chip and chip.group(1) == "misregistered"  # the warning colour
    chip = re.search(r'<span class="chip (\w+)" title="artefact network[^>]*>quality 9', html)
    assert chip and chip.group(1) == "aligned"


def test_subject_report_flags_artefacts_at_the_thresholds_in_effect(tmp_path: Path) -> None:
    rows = [artefact_row("sub-01/anat/sub-01_T1w.nii.gz", 8.0, p_blur=0.3, p_noise=0.3)]
    html = render_subject_report(
        "sub-01",
        rows,
        {},
        MEASURES,
        tmp_path / "s.html",
        generated_by="x",
        dataset="test",
        thresholds={"p_blur": Threshold(review=0.25)},
    ).read_text()
    assert "quality 8.000/10: blur</span>" in html


def test_subject_report_captions_the_artefact_figure(tmp_path: Path, png: Path) -> None:
    graded = artefact_row("sub-01/anat/sub-01_T1w.nii.gz", 7.5)
    caption = FIGURE_CAPTIONS["artefacts"]
    without = render_subject_report(
        "sub-01", [graded], {}, MEASURES, tmp_path / "a.html", generated_by="x", dataset="test"
    ).read_text()
    assert escape(caption) not in without
    figures = {graded["filename"]: {"artefacts": png, "raw": png}}
    html = render_subject_report(
        "sub-01", [graded], figures, MEASURES, tmp_path / "b.html", generated_by="x", dataset="test"
    ).read_text()
    assert f"<figcaption>{escape(caption)}</figcaption>" in html
    assert 'alt="artefacts mosaic of sub-01_T1w.nii.gz"' in html
    # Figures in the order of FIGURE_CAPTIONS: the raw image before the artefacts.
    assert html.index(escape(FIGURE_CAPTIONS["raw"])) < html.index(escape(caption))
