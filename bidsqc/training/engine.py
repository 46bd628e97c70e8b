"""The training loop: it knows nothing of motion, only a network, an optimiser, a loss and data."""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from bidsqc.inference.models import resolve_device

__all__ = [
    "EpochRecord",
    "History",
    "evaluate",
    "fit",
    "seed_everything",
    "train_epoch",
]

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (all devices) global generators.

    Call it before building the network, so that its initial weights depend on the seed too.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _map_tensors(function: Callable[[Tensor], Tensor], data: Any) -> Any:
    """Apply ``function`` to every tensor in a tensor, mapping or named tuple."""
    if isinstance(data, Tensor):
        return function(data)
    if isinstance(data, Mapping):
        return {key: _map_tensors(function, value) for key, value in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(_map_tensors(function, value) for value in data))
    raise TypeError(f"expected a tensor, a mapping or a named tuple of tensors, got {type(data)}")


def _concatenate(batches: list[Any]) -> Any:
    """Join per-batch tensors, mappings or named tuples of tensors along the batch axis."""
    first = batches[0]
    if isinstance(first, Tensor):
        return torch.cat(batches)
    if isinstance(first, Mapping):
        return {key: _concatenate([batch[key] for batch in batches]) for key in first}
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(_concatenate(list(parts)) for parts in zip(*batches, strict=True)))
    raise TypeError(f"expected a tensor, a mapping or a named tuple of tensors, got {type(first)}")


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimiser: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], Tensor],
    device: torch.device,
    progress: bool = True,
) -> float:
    """One pass over ``loader`` in training mode; return the mean loss per sample.

    Each batch is ``(inputs, targets)``; ``loss_fn(model(inputs), targets)`` must return a scalar
    averaged over the batch. A non-finite loss raises ``FloatingPointError``.
    """
    model.train()
    total, count = 0.0, 0
    for inputs, targets in tqdm(loader, desc="train", leave=False, disable=not progress):
        inputs = inputs.to(device)
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs), _map_tensors(lambda t: t.to(device), targets))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at batch {count}")
        loss.backward()
        optimiser.step()
        total += loss.item() * len(inputs)
        count += len(inputs)
    return total / count


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable[[Any, Any], Tensor],
    device: torch.device,
    metrics: Callable[[Any, Any], dict[str, float]] | None = None,
    progress: bool = True,
) -> tuple[float, dict[str, float]]:
    """Mean loss per sample over ``loader`` in eval mode, and ``metrics(outputs, targets)``
    computed once on the outputs and targets of the whole set (an empty dict without it)."""
    model.eval()
    total, count, outputs, targets = 0.0, 0, [], []
    with torch.inference_mode():
        for inputs, batch_targets in tqdm(loader, desc="eval", leave=False, disable=not progress):
            batch_targets = _map_tensors(lambda t: t.to(device), batch_targets)
            output = model(inputs.to(device))
            total += loss_fn(output, batch_targets).item() * len(inputs)
            count += len(inputs)
            if metrics is not None:
                outputs.append(_map_tensors(lambda t: t.cpu(), output))
                targets.append(_map_tensors(lambda t: t.cpu(), batch_targets))
    scores = metrics(_concatenate(outputs), _concatenate(targets)) if metrics else {}
    return total / count, scores


@dataclass
class EpochRecord:
    """What one epoch gave."""

    epoch: int
    train_loss: float
    val_loss: float
    val_metrics: dict[str, float]
    seconds: float


@dataclass
class History:
    """Every epoch of a :func:`fit` run; the model holds the weights of :attr:`best_epoch`."""

    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def best(self) -> EpochRecord:
        """The epoch with the lowest validation loss."""
        return self.epochs[self.best_epoch - 1]

    def to_dict(self) -> dict:
        return asdict(self)


def fit(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], Tensor],
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    epochs: int,
    seed: int,
    device: str = "auto",
    metrics: Callable[[Any, Any], dict[str, float]] | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    patience: int | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` and keep the weights of the epoch with the lowest validation loss.

    The global generators are seeded with ``seed`` first (:func:`seed_everything`), which fixes
    the shuffling, dropout and augmentation (also in loader workers, whose seeds derive from
    torch's). The model and, when it is a module, ``loss_fn`` are moved to ``device`` in place;
    an optimiser built on the model's parameters before keeps working. Each epoch is logged on
    the ``bidsqc.training`` logger.

    Parameters
    ----------
    model, optimiser, loss_fn
        See :func:`train_epoch`.
    train_loader, val_loader : torch.utils.data.DataLoader
        Batches of ``(inputs, targets)``.
    epochs : int
        Maximum number of epochs.
    seed : int
        Seed of the run.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``... or ``"auto"`` (:func:`resolve_device`).
    metrics : callable, optional
        ``metrics(outputs, targets) -> dict`` on the whole validation set, e.g.
        :func:`motion_metrics`.
    scheduler : torch.optim.lr_scheduler.LRScheduler, optional
        Learning-rate schedule of ``optimiser``, stepped once after each epoch.
    patience : int, optional
        Stop after this many epochs without a lower validation loss; by default, run them all.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    History
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    seed_everything(seed)
    target_device = resolve_device(device)
    model.to(target_device)
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(target_device)
    history = History()
    best_loss, best_state = float("inf"), None
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=not progress):
        start = time.perf_counter()
        train_loss = train_epoch(model, train_loader, optimiser, loss_fn, target_device, progress)
        if scheduler is not None:
            scheduler.step()
        val_loss, val_metrics = evaluate(
            model, val_loader, loss_fn, target_device, metrics, progress
        )
        record = EpochRecord(epoch, train_loss, val_loss, val_metrics, time.perf_counter() - start)
        history.epochs.append(record)
        logger.info(
            "epoch %d: train loss %.4f, val loss %.4f, %s",
            epoch,
            train_loss,
            val_loss,
            ", ".join(f"{key} {value:.3f}" for key, value in val_metrics.items()),
        )
        if val_loss < best_loss:
            best_loss, history.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif patience is not None and epoch - history.best_epoch >= patience:
            history.stopped_early = True
            logger.info("no better validation loss for %d epochs: stopping", patience)
            break
    if best_state is None:
        raise FloatingPointError("the validation loss was never finite")
    model.load_state_dict(best_state)
    return history
