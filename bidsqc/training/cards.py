"""Saved weights and the JSON model card beside them: what trained them, on what, how well."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bidsqc import __version__
from bidsqc.data import read_model_card

__all__ = [
    "file_sha256",
    "record_calibration",
    "save_model",
]


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _git_version() -> str | None:
    """``git describe`` of the source tree this module runs from, or None outside a checkout."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


def save_model(model: nn.Module, path: str | os.PathLike, card: Mapping[str, Any]) -> Path:
    """Write ``model.state_dict()`` to ``path`` and a JSON model card beside it.

    ``card`` must give ``training_files`` (paths: the sample table and whatever else defines the
    training data), ``hyperparameters`` (including the network's constructor arguments, for
    :func:`load_model`), ``validation_metrics`` and ``seed``. The card written adds the SHA-256
    of every training file and of the weights, ``bidsqc_version``, ``git_version`` (``git
    describe``, None outside a checkout), ``command_line`` and ``date`` (UTC, ISO 8601).

    Returns
    -------
    pathlib.Path
        The card, ``path`` with the suffix ``.json``.
    """
    missing = [
        key
        for key in ("training_files", "hyperparameters", "validation_metrics", "seed")
        if key not in card
    ]
    if missing:
        raise ValueError(f"the model card lacks {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    written = {
        **card,
        "architecture": type(model).__name__,
        "training_files": [
            {"path": str(file), "sha256": file_sha256(file)} for file in card["training_files"]
        ],
        "weights": {"path": path.name, "sha256": file_sha256(path)},
        "bidsqc_version": __version__,
        "git_version": _git_version(),
        "command_line": sys.argv,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return _write_card(path, written)


def record_calibration(weights: str | os.PathLike, calibration: Mapping[str, Any]) -> Path:
    """Write ``calibration`` into the model card of ``weights`` (its ``calibration`` entry,
    replaced if there is one): the decision ``thresholds`` that
    :func:`bidsqc.inference.models.load_network` gives the network, and how they were set.

    Returns
    -------
    pathlib.Path
        The card.
    """
    if "thresholds" not in calibration:
        raise ValueError("the calibration lacks its thresholds")
    return _write_card(weights, read_model_card(weights) | {"calibration": dict(calibration)})


def _write_card(weights: str | os.PathLike, card: Mapping[str, Any]) -> Path:
    card_path = Path(weights).with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path
