"""Loading trained networks: the device, the weights and the model card beside them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from bidsqc.data import MODELS_DIR, card_thresholds, model_provenance, read_model_card
from bidsqc.networks import ArtefactNet, EncoderNet, MotionNet, ProbedMotionNet, RegistrationNet
from bidsqc.outputs.files import write_text_atomically

__all__ = [
    "ARCHITECTURES",
    "write_prediction",
    "load_bundled_network",
    "load_model",
    "load_network",
    "resolve_device",
]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; any other name goes to :class:`torch.device`."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` saved at ``path``, on CPU; ``weights_only``, so no pickled code runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(path: str | os.PathLike, model_cls: type[ModuleT], **kwargs: Any) -> ModuleT:
    """Build ``model_cls(**kwargs)``, load the weights at ``path`` and return it in eval mode."""
    weights = read_weights(path)
    model = model_cls(**kwargs)
    model.load_state_dict(weights)
    return model.eval()


#: The network classes a model card's ``architecture`` may name.
ARCHITECTURES: dict[str, type[EncoderNet]] = {
    cls.__name__: cls for cls in (MotionNet, ProbedMotionNet, RegistrationNet, ArtefactNet)
}


def load_network(weights: str | os.PathLike, device: str | torch.device = "cpu") -> EncoderNet:
    """Trained weights (``.pt``), in eval mode on ``device``.

    The network's class and constructor arguments come from the model card beside the weights
    (same name, ``.json``), so the card and the weights cannot disagree; so do its calibrated
    decision thresholds (:attr:`bidsqc.networks.EncoderNet.thresholds`).
    """
    card = read_model_card(weights)
    architecture = card.get("architecture", MotionNet.__name__)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{weights}: unknown architecture {architecture!r}")
    network = load_model(weights, ARCHITECTURES[architecture], **card["hyperparameters"]["network"])
    network.thresholds = card_thresholds(card)
    return network.to(resolve_device(str(device)))


def load_bundled_network(name: str, device: str | torch.device = "cpu") -> EncoderNet:
    """The bundled network ``name`` (``"motion"``, ``"registration"`` or ``"artefact"``), in
    eval mode on ``device``."""
    return load_network(MODELS_DIR / f"{name}.pt", device)


def write_prediction(
    out_file: str | os.PathLike, prediction: dict, weights: str | os.PathLike
) -> str:
    """Write a network's prediction as JSON, with the model that made it
    (:func:`bidsqc.data.model_provenance`), and return the file's path."""
    written = prediction | {"model": model_provenance(weights)}
    write_text_atomically(out_file, json.dumps(written, indent=2) + "\n")
    return str(out_file)
