"""What the registration benchmarks share: their arguments, each image as a participant run
registers it, and each result printed as it comes."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

import nibabel as nb

from bidsqc.preprocessing import reorient_to_ras, resample_to_zoom

__all__ = ["image_at_2mm", "print_row", "registration_parser"]


def registration_parser(doc: str) -> argparse.ArgumentParser:
    """A parser for ``--images`` and ``--out`` (a TSV), described by the first paragraph of a
    script's ``doc``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def image_at_2mm(path: str | os.PathLike) -> nb.Nifti1Image:
    """The image reoriented to RAS+ and resampled to 2 mm, as ``register`` receives it."""
    return resample_to_zoom(reorient_to_ras(nb.load(path)))


def print_row(row: Mapping[str, object]) -> None:
    """Print one result as tab-separated values, floats to three decimals."""
    values = (f"{value:.3f}" if isinstance(value, float) else str(value) for value in row.values())
    print("\t".join(values), flush=True)
