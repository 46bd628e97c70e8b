"""Check that two bidsqc output directories hold the same tables: every participant table and
group table, row for row, the numbers within a tolerance (the same images processed by two
installs of one version, e.g. a container and a plain install).

    python scripts/compare_qc_tables.py OUT_A OUT_B [--tolerance 1e-6]

Prints the largest difference of each table and exits 1 if a table is missing on one side, or
differs in its rows, columns, texts or beyond the tolerance in a number.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: The tables compared, relative to an output directory.
TABLES = ("sub-*/sub-*_qc.tsv", "group_*.tsv")


def table_differences(a: pd.DataFrame, b: pd.DataFrame, tolerance: float) -> list[str]:
    """What differs between two tables, in words; empty if they agree."""
    if list(a.columns) != list(b.columns):
        return [f"columns differ: {sorted(set(a.columns) ^ set(b.columns))}"]
    if len(a) != len(b):
        return [f"{len(a)} rows against {len(b)}"]
    problems = []
    for column in a.columns:
        left, right = a[column], b[column]
        if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
            both_nan = left.isna() & right.isna()
            scale = np.maximum(np.abs(left), np.abs(right)).clip(lower=1.0)
            relative = ((left - right).abs() / scale).where(~both_nan, 0.0).fillna(np.inf)
            if (relative > tolerance).any():
                problems.append(f"{column}: relative difference up to {relative.max():.3g}")
        elif not left.fillna("").astype(str).equals(right.fillna("").astype(str)):
            problems.append(f"{column}: texts differ in {int((left != right).sum())} rows")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()

    names = sorted(
        {path.relative_to(root) for root in (args.first, args.second) for pattern in TABLES
         for path in root.glob(pattern)}
    )  # fmt: skip
    failed = not names
    for name in names:
        paths = args.first / name, args.second / name
        if not all(path.is_file() for path in paths):
            print(f"{name}: only in {', '.join(str(p.parent) for p in paths if p.is_file())}")
            failed = True
            continue
        problems = table_differences(*(pd.read_csv(p, sep="\t") for p in paths), args.tolerance)
        print(f"{name}: {'; '.join(problems) or 'the same'}")
        failed |= bool(problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
