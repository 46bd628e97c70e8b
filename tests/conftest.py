"""Fixtures shared by the test modules."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import ArrayLike

from bidsqc.cli.run import main


@pytest.fixture
def make_bids(tmp_path: Path) -> Callable[..., Path]:
    """Return a function writing a BIDS dataset of empty files under ``tmp_path``.

    ``make(files, name="bids", description=None)`` writes ``dataset_description.json``
    (updated with ``description``), then each of ``files`` (relative paths; JSON files hold
    ``{}``), and returns the root of the dataset.
    """

    def make(
        files: Iterable[str], *, name: str = "bids", description: dict[str, Any] | None = None
    ) -> Path:
        root = tmp_path / name
        root.mkdir()
        fields = {"Name": "bidsqc tests", "BIDSVersion": "1.9.0", **(description or {})}
        (root / "dataset_description.json").write_text(json.dumps(fields))
        for relpath in files:
            path = root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}" if path.suffix == ".json" else "")
        return root

    return make


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The demo BIDS dataset shipped in ``data/demo`` (read-only: never write inside it)."""
    return Path(__file__).parents[1] / "data" / "demo"


@pytest.fixture(scope="session")
def bids_examples() -> Path:
    """The bids-examples layouts in ``../shared`` beside the checkout; skip when absent."""
    path = Path(__file__).parents[2] / "shared" / "data" / "bids-examples"
    if not path.is_dir():
        pytest.skip(f"no BIDS examples in {path}")
    return path


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``root`` with its content hash (or link target) and mtime."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            state[str(path)] = (os.readlink(path), path.lstat().st_mtime_ns)
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path)] = (digest, path.stat().st_mtime_ns)
        else:
            state[str(path)] = ("dir", path.stat().st_mtime_ns)
    return state


@pytest.fixture(scope="session")
def snapshot() -> Callable[[Path], dict[str, tuple[str, int]]]:
    """The function that records every path under a folder with its content and mtime."""
    return _snapshot


@pytest.fixture(scope="session")
def demo_run(demo_dir, tmp_path_factory):
    """Participant then group level on the demo; returns the output folder and the runs' facts."""
    out = tmp_path_factory.mktemp("demo") / "out"
    before = _snapshot(demo_dir)
    first = main([str(demo_dir), str(out), "participant", "--nprocs", "2"])
    group = main([str(demo_dir), str(out), "group"])
    return out, before, first, group


@pytest.fixture
def is_nodding() -> Callable[[ArrayLike, ArrayLike], bool]:
    """Return whether motion poses (``degrees``, ``translation``, one row per pose) are nods as
    ``nodding_motion`` makes them: a pitch alone, every other pose the unmoved head."""

    def nodding(degrees: ArrayLike, translation: ArrayLike) -> bool:
        degrees = np.asarray(degrees)
        return not (degrees[1::2].any() or degrees[:, 1:].any() or np.asarray(translation).any())

    return nodding
