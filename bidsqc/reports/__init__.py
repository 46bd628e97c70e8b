"""Self-contained HTML reports: one per participant, one per modality for the group.

This module holds what both reports share: the jinja2 environment, which columns of a
result row are measures, how values are displayed, and how reports link to each other
(file names come from :mod:`bidsqc.outputs`). The renderers live in
:mod:`bidsqc.reports.individual` and :mod:`bidsqc.reports.group`, the figures in
:mod:`bidsqc.reports.figures`.
"""

from __future__ import annotations

import base64
import math
import mimetypes
import numbers
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from bidsqc.measures.catalogue import MeasureInfo
from bidsqc.outputs.columns import ID_COLUMNS
from bidsqc.outputs.files import write_text_atomically
from bidsqc.outputs.paths import participant_report_name

__all__ = [
    "data_uri",
    "describe",
    "format_value",
    "image_anchor",
    "is_finite",
    "measure_columns",
    "render_html",
    "subject_report_href",
]


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("bidsqc", "data/reports"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["script"] = _script
    return environment


@cache
def _script(name: str) -> Markup:
    """A bundled script (``data/reports/<name>``), verbatim, to inline in a ``<script>``."""
    text = files("bidsqc").joinpath("data", "reports", name).read_text("utf-8")
    if "</script" in text.lower():
        raise ValueError(f"{name} would close its <script> element")
    return Markup(text)


def render_html(template: str, out_file: Path, **context: object) -> Path:
    """Render one of the bundled report templates to ``out_file`` (UTF-8)."""
    return write_text_atomically(out_file, _environment().get_template(template).render(**context))


def is_finite(value: object) -> bool:
    """Whether ``value`` reads as a finite number (``"n/a"``, ``None`` and NaN do not)."""
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def data_uri(path: Path) -> str:
    """The file as a ``data:`` URI, so that a report embeds it instead of linking to it."""
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def measure_columns(columns: Iterable[str], measures: Mapping[str, MeasureInfo]) -> list[str]:
    """The measure columns among ``columns``: the known ones in ``measures`` order, then the
    others (columns added later, e.g. network outputs) in their given order."""
    columns = [column for column in columns if column not in ID_COLUMNS]
    return [key for key in measures if key in columns] + [
        column for column in columns if column not in measures
    ]


def describe(column: str, measures: Mapping[str, MeasureInfo]) -> MeasureInfo:
    """What a column means; a column without a description is shown under its own name."""
    return measures.get(column) or MeasureInfo(name=column, description="", units="", better="")


def format_value(value: object) -> str:
    """Display text of a cell: numbers to 4 significant digits, missing values as "n/a"."""
    if pd.isna(value):
        return "n/a"
    if isinstance(value, numbers.Integral):
        return str(value)
    if not isinstance(value, numbers.Real):
        return str(value)
    magnitude = abs(float(value))
    if magnitude == 0 or math.isinf(magnitude):
        return str(float(value))
    if 1e-3 <= magnitude < 1e5:
        return f"{value:.{max(0, 3 - math.floor(math.log10(magnitude)))}f}"
    return f"{value:.3e}"


def image_anchor(filename: str) -> str:
    """HTML id of an image's section in its subject report: the file name, without
    extensions, reduced to characters that are safe in a URL fragment."""
    stem = PurePosixPath(filename).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "-", stem) or "image"


def subject_report_href(participant_id: str, filename: str) -> str:
    """Relative link from a group report to an image's section in its subject report."""
    return f"{quote(participant_report_name(participant_id), safe='')}#{image_anchor(filename)}"
