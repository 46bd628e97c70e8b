"""Figures of the reports: slice mosaics and the motion distribution (PNG), and strip-plot
geometry (inline SVG).

Mosaics are drawn with matplotlib's object-oriented API on an Agg canvas: no pyplot, no
global backend state, so they are safe to draw in worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np
from contourpy import LineType, contour_generator
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from nibabel.affines import voxel_sizes
from numpy.typing import ArrayLike
from PIL import Image

from bidsqc.geometry import MOTION_GRADE_NAMES, MOTION_GRADE_THRESHOLDS_MM

__all__ = [
    "StripLayout",
    "edge_mask",
    "flagged_tiles",
    "intensity_window",
    "plot_mosaic",
    "plot_motion_distribution",
    "plot_motion_prediction",
    "strip_layout",
]

#: Slices per view (sagittal, coronal and axial rows of a mosaic).
N_SLICES = 7
#: Mosaic width (inches) and resolution; the height follows from the field of view.
MOSAIC_WIDTH = 8.0
MOSAIC_DPI = 100
#: Height of the band that holds the optional title (inches).
TITLE_HEIGHT = 0.3
#: A view's row is kept between these height / width ratios; a panel with a more extreme
#: field of view is letterboxed, never stretched.
ROW_ASPECT = (0.3, 1.6)
#: Intensity window: percentiles of the nonzero voxels.
WINDOW = (0.5, 99.5)
#: Foreground (whose extent the slices span): above this fraction of the window.
FOREGROUND = 0.1
#: Voxels the window and foreground are estimated on (a strided subsample of the volume).
SAMPLE_SIZE = 2**21
OUTLINE_COLOR = "#ff4f4f"
#: Background of the motion grades none, mild and severe in the motion plot.
MOTION_GRADE_COLOURS = ("#4caf50", "#ffb300", "#e53935")
#: Grey levels of the saved PNG. Evenly spaced levels, unlike an adaptive palette, do not
#: spend colours on background noise, which keeps a mosaic to a few tens of kB.
GREY_LEVELS = 32


def plot_mosaic(
    img: nb.Nifti1Image,
    out_file: Path,
    *,
    outline: nb.Nifti1Image | None = None,
    title: str | None = None,
) -> Path:
    """Draw sagittal, coronal and axial slices of an image, in physical proportions.

    Parameters
    ----------
    img
        A 3D image in RAS orientation (a 4D image shows its first volume).
    out_file
        Where to write the PNG.
    outline
        A mask on the grid of ``img`` (e.g. the template brain mask on a registered image),
        drawn as a contour at 0.5.
    title
        Text drawn above the slices.

    Returns
    -------
    Path
        ``out_file``.

    Notes
    -----
    Panels are cropped to the foreground (voxels above 10 % of the intensity window) and
    each row spreads its slices over the foreground along one axis. Panels keep the aspect
    ratio of their field of view in millimetres, so thick-slice images are not squashed.
    Slices are in neurological convention (left on the left), anterior to the right on
    sagittal slices.
    """
    data = _volume(img)
    overlay = None
    if outline is not None:
        overlay = _volume(outline)
        if overlay.shape != data.shape or not np.allclose(outline.affine, img.affine, atol=1e-3):
            raise ValueError("the outline must be on the grid of the image")
    zooms = voxel_sizes(img.affine)
    sample, step = _subsample(data)
    vmin, vmax = intensity_window(sample)
    box = _foreground_box(sample > vmin + FOREGROUND * (vmax - vmin), step, data.shape)

    fig = Figure(facecolor="black")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    outlines = []
    top = TITLE_HEIGHT if title else 0.0
    width = MOSAIC_WIDTH / N_SLICES
    for axis in range(3):
        planes = [a for a in range(3) if a != axis]
        crop = tuple(box[a] for a in planes)
        fov = [(box[a].stop - box[a].start) * zooms[a] for a in planes]
        height = width * np.clip(fov[1] / fov[0], *ROW_ASPECT)
        scale = min(width / fov[0], height / fov[1])
        bottom = -top - (height + fov[1] * scale) / 2
        for column, index in enumerate(_spread(box[axis])):
            left = column * width + (width - fov[0] * scale) / 2
            extent = (left, left + fov[0] * scale, bottom, bottom + fov[1] * scale)
            ax.imshow(
                np.moveaxis(data, axis, 0)[index][crop].T,
                cmap="gray",
                vmin=vmin,
                vmax=vmax,
                origin="lower",
                extent=extent,
                aspect="auto",
            )
            if overlay is not None:
                outlines += _contour(np.moveaxis(overlay, axis, 0)[index][crop].T, extent)
        top += height
    ax.add_collection(LineCollection(outlines, colors=OUTLINE_COLOR, linewidths=0.7))
    if title:
        ax.text(MOSAIC_WIDTH / 2, -TITLE_HEIGHT / 2, title, color="white", ha="center", va="center")
    ax.set_xlim(0, MOSAIC_WIDTH)
    ax.set_ylim(-top, 0)
    fig.set_size_inches(MOSAIC_WIDTH, top)
    return _save_png(fig, Path(out_file))


def edge_mask(data: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The white matter of a T1w inside ``brain``: voxels above 75 % of the 99th percentile of
    the brain's intensities. Drawn as a contour, its boundary shows how another image of the
    head lines up with the T1w."""
    data = np.nan_to_num(np.asarray(data, dtype=np.float32))
    inside = data[brain]
    if not inside.size or inside.max() <= 0:
        return np.zeros(data.shape, dtype=bool)
    return brain & (data > 0.75 * np.percentile(inside, 99))


def flagged_tiles(artefact_map: nb.Nifti1Image) -> tuple[nb.Nifti1Image, str]:
    """The voxels whose tiles cross the default review threshold of some artefact, and a title
    that names those artefacts. The image's probability is a weighted mean of its tiles' logits,
    so an image flagged for an artefact always has a tile flagged for it."""
    from bidsqc.decisions import DEFAULT_THRESHOLDS, flagged_artefacts
    from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS

    columns = list(ARTEFACT_PROBABILITY_COLUMNS.values())
    probabilities = np.nan_to_num(np.asarray(artefact_map.dataobj, dtype=np.float32))
    highest = probabilities.max(axis=(0, 1, 2))
    names = flagged_artefacts(dict(zip(columns, highest, strict=True)))
    title = f"Outlined: tiles flagged for {', '.join(names)}" if names else "No tile flagged"
    review = np.array([DEFAULT_THRESHOLDS[column].review for column in columns])
    flagged = (probabilities >= review).any(axis=-1)
    return nb.Nifti1Image(flagged.astype(np.uint8), artefact_map.affine), title


def plot_motion_prediction(prediction: Mapping, out_file: Path) -> Path:
    """:func:`plot_motion_distribution` of a motion prediction (the network's ``motion.json``)."""
    return plot_motion_distribution(
        prediction["mm_bin_centres"],
        prediction["mm_distribution"],
        [prediction[f"p_motion_{grade}"] for grade in MOTION_GRADE_NAMES],
        MOTION_GRADE_THRESHOLDS_MM,
        Path(out_file),
    )


def plot_motion_distribution(
    bin_centres: ArrayLike,
    probabilities: ArrayLike,
    grade_probabilities: ArrayLike,
    thresholds_mm: tuple[float, float],
    out_file: Path,
) -> Path:
    """Bar chart of the motion network's distribution over motion (mm), with the grades.

    The background is shaded by grade (none, mild, severe, split at ``thresholds_mm``), the
    expected motion is a vertical line, and the legend gives each grade's probability.
    """
    centres = np.asarray(bin_centres, dtype=float)
    probabilities = np.asarray(probabilities, dtype=float)
    none, mild, severe = np.asarray(grade_probabilities, dtype=float)
    expected = float(probabilities @ centres)
    width = centres[1] - centres[0]
    edges = (centres[0] - width / 2, *thresholds_mm, centres[-1] + width / 2)

    fig = Figure(figsize=(MOSAIC_WIDTH, 2.4), dpi=MOSAIC_DPI, layout="constrained")
    ax = fig.add_subplot()
    for (low, high), colour, label in zip(
        zip(edges[:-1], edges[1:], strict=True),
        MOTION_GRADE_COLOURS,
        (f"none: p = {none:.2f}", f"mild: p = {mild:.2f}", f"severe: p = {severe:.2f}"),
        strict=True,
    ):
        ax.axvspan(low, high, color=colour, alpha=0.25, linewidth=0, label=label)
    ax.bar(centres, probabilities, width=width * 0.9, color="#3b4a6b")
    ax.axvline(expected, color="black", linewidth=1.2, label=f"estimate: {expected:.1f} mm")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, max(float(probabilities.max()) * 1.15, 0.05))
    ax.set_xlabel("head motion, RMS displacement (mm)")
    ax.set_ylabel("probability")
    ax.legend(loc="upper right", fontsize="small", frameon=False)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(out_file)
    return out_file


def _volume(img: nb.Nifti1Image) -> np.ndarray:
    """The image data as floats, the first volume of a 4D image."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    return data.reshape(data.shape[:3] + (-1,))[..., 0]


def _subsample(data: np.ndarray) -> tuple[np.ndarray, int]:
    """A strided view of about :data:`SAMPLE_SIZE` voxels, and its stride."""
    step = max(1, int(np.ceil((data.size / SAMPLE_SIZE) ** (1 / 3))))
    return data[::step, ::step, ::step], step


def intensity_window(data: np.ndarray) -> tuple[float, float]:
    """The :data:`WINDOW` percentiles of the finite nonzero voxels (of all the finite ones if
    none is nonzero), widened if needed so that ``vmax > vmin`` (e.g. a constant image)."""
    values = data[np.isfinite(data)]
    nonzero = values[values != 0]
    vmin, vmax = (
        np.percentile(nonzero if nonzero.size else values, WINDOW) if values.size else (0, 0)
    )
    return float(vmin), max(float(vmax), vmin + 1e-6 * max(1.0, abs(vmin)))


def _foreground_box(
    foreground: np.ndarray, step: int, shape: tuple[int, ...]
) -> tuple[slice, slice, slice]:
    """Bounding box, on the full grid, of a foreground mask drawn on a grid strided by
    ``step``, with a 4 % margin; the whole grid if the mask is empty."""
    if not foreground.any():
        return tuple(slice(0, size) for size in shape[:3])
    box = []
    for axis, size in enumerate(shape[:3]):
        occupied = np.flatnonzero(foreground.any(axis=tuple(a for a in range(3) if a != axis)))
        first, stop = occupied[0] * step, min(occupied[-1] * step + step, size)
        margin = round(0.04 * (stop - first))
        box.append(slice(max(first - margin, 0), min(stop + margin, size)))
    return tuple(box)


def _spread(extent: slice) -> np.ndarray:
    """:data:`N_SLICES` slice indices evenly spread inside ``extent``, ends excluded."""
    positions = np.linspace(extent.start, extent.stop - 1, N_SLICES + 2)[1:-1]
    return np.unique(np.rint(positions).astype(int))


def _contour(panel: np.ndarray, extent: tuple[float, float, float, float]) -> list[np.ndarray]:
    """Lines where a panel crosses 0.5, in the coordinates of ``extent`` (as in ``imshow``
    with ``origin="lower"``: the extent bounds the outer pixel edges)."""
    lines = contour_generator(z=panel, line_type=LineType.Separate).lines(0.5)
    left, right, bottom, top = extent
    size = np.array([(right - left) / panel.shape[1], (top - bottom) / panel.shape[0]])
    return [(line + 0.5) * size + (left, bottom) for line in lines]


def _save_png(fig: Figure, out_file: Path) -> Path:
    """Rasterise on an Agg canvas and save as a palette PNG: :data:`GREY_LEVELS` evenly
    spaced grey levels, and the outline colour for every coloured pixel."""
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(MOSAIC_DPI)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].astype(np.int16)
    index = np.rint(rgb.mean(axis=-1) * ((GREY_LEVELS - 1) / 255)).astype(np.uint8)
    index[np.ptp(rgb, axis=-1) > 64] = GREY_LEVELS
    greys = np.linspace(0, 255, GREY_LEVELS).round().astype(np.uint8)
    outline = (np.array(to_rgb(OUTLINE_COLOR)) * 255).round().astype(np.uint8)
    png = Image.fromarray(index)
    png.putpalette(np.vstack([np.repeat(greys[:, None], 3, axis=1), outline]).ravel().tobytes())
    out_file.parent.mkdir(parents=True, exist_ok=True)
    png.save(out_file)
    return out_file


@dataclass(frozen=True)
class StripLayout:
    """Geometry of a horizontal strip plot, in SVG user units (y grows downwards).

    Attributes
    ----------
    width, height
        Size of the SVG view box.
    xlim
        x of the two ends of the value axis.
    points
        ``(x, y)`` of each value, in input order; None for a value that is not finite.
    box
        x of the lower whisker, first quartile, median, third quartile and upper whisker
        (Tukey: the most extreme values within 1.5 IQR of the quartiles).
    band
        y of the top and bottom of the strip the points are jittered in.
    axis
        y of the value axis.
    ticks
        x and label of each tick.
    """

    width: float
    height: float
    xlim: tuple[float, float]
    points: list[tuple[float, float] | None]
    box: tuple[float, float, float, float, float]
    band: tuple[float, float]
    axis: float
    ticks: list[tuple[float, str]]


def strip_layout(
    values: ArrayLike, *, width: float = 360.0, height: float = 80.0, seed: int = 0
) -> StripLayout | None:
    """Lay out a strip plot over a box plot of ``values`` (None if none is finite).

    The vertical jitter is drawn from a generator seeded with ``seed``, so a report renders
    identically every time.
    """
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    pad = 0.05 * (high - low) or 0.05 * abs(low) or 1.0
    low, high = low - pad, high + pad
    margin = 16.0
    band, axis = (8.0, height - 34.0), height - 22.0

    def x(value: float) -> float:
        return round(float(margin + (value - low) / (high - low) * (width - 2 * margin)), 1)

    ticks = MaxNLocator(nbins=5).tick_values(low, high)
    ticks = ticks[(ticks >= low) & (ticks <= high)]
    ticks[np.abs(ticks) < 1e-9 * (high - low)] = 0.0  # not 1e-17: a rounding error
    q1, median, q3 = np.percentile(finite, (25, 50, 75))
    inliers = finite[(finite >= q1 - 1.5 * (q3 - q1)) & (finite <= q3 + 1.5 * (q3 - q1))]
    jitter = np.random.default_rng(seed).uniform(-0.4, 0.4, values.size) * (band[1] - band[0])
    middle = (band[0] + band[1]) / 2
    return StripLayout(
        width=width,
        height=height,
        xlim=(margin, width - margin),
        points=[
            (x(value), round(float(middle + dy), 1)) if np.isfinite(value) else None
            for value, dy in zip(values, jitter, strict=True)
        ],
        box=(x(inliers.min()), x(q1), x(median), x(q3), x(inliers.max())),
        band=band,
        axis=axis,
        ticks=[(x(t), f"{t:.6g}") for t in ticks],
    )
