"""The ``bidsqc-train`` command: train a network of bidsqc from real base images.

``bidsqc-train motion`` pre-generates motion samples from the base images
(:func:`bidsqc.training.samples.generate_motion_samples`), splits them by base image
(:func:`bidsqc.training.splits.subject_level_split`), trains :class:`bidsqc.networks.MotionNet` with
:func:`bidsqc.training.engine.fit` and saves the weights of the best epoch with their model card
(:func:`bidsqc.training.cards.save_model`). Each network is a sub-command, so the others can be
added the same way. See ``docs/training.md``."""

from __future__ import annotations

import inspect
import json
import logging
import math
import sys
from argparse import ArgumentParser, ArgumentTypeError, Namespace, RawDescriptionHelpFormatter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.contrib.logging import logging_redirect_tqdm

from bidsqc import __version__
from bidsqc.cli import EXIT_OK, EXIT_USAGE
from bidsqc.cli.parser import absolute_path, image_list, positive_int

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module
    from torch.utils.data import Dataset

    from bidsqc.networks import EncoderNet

__all__ = ["build_parser", "main", "train_artefact", "train_motion", "train_registration"]

LOGGER = logging.getLogger("bidsqc.train")
#: Inside ``--out``: the samples folder, and the settings its samples were generated with.
SAMPLES_DIR, GENERATION_FILE = "samples", "generation.json"
#: The draws of ``--motion-draw``: those of :func:`bidsqc.training.samples.generate_motion_samples`.
MOTION_DRAWS = ("ranges", "rms", "nods")

_DESCRIPTION = """\
Train a network of bidsqc from real base images (T1w or FLAIR, at native resolution).

Corrupted samples are generated from the base images into OUT/samples, split by base image
into training and validation, and the network is trained; the weights of the epoch with the
lowest validation loss are written to OUT/<network>.pt, with a model card OUT/<network>.json.
A rerun with the same OUT reuses the samples."""

_EPILOG = """\
exit codes:
  0  the network was trained and saved
  2  usage or data error (nothing was trained)"""


class SetupError(Exception):
    """The data or the settings of a run do not allow training (exit code 2)."""


def build_parser() -> ArgumentParser:
    """Return the parser of the ``bidsqc-train`` command line."""
    parser = ArgumentParser(
        prog="bidsqc-train",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"bidsqc {__version__}")
    networks = parser.add_subparsers(dest="network", required=True, metavar="NETWORK")
    motion = networks.add_parser(
        "motion",
        help="motion grade and amount (mm): MotionNet",
        description="Train the motion network (MotionNet) on simulated motion.",
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_training_arguments(motion)
    motion.add_argument(
        "--motion-draw",
        choices=MOTION_DRAWS,
        default="ranges",
        help="how the motion of a sample is drawn: ranges, angles and shifts of 2 poses around "
        "a level of 1-8 degrees and mm, each copy registered itself (the bundled weights); "
        "rms, the RMS first, 0-20 mm with its square root uniform, then 2-8 poses of exactly "
        "that RMS, each copy warped through its clean image's registration; nods, 3-12 brief "
        "nods on cue, the head returning after each, warped like rms (default: %(default)s)",
    )
    _add_strip_fraction(motion)
    motion.add_argument(
        "--bias-field",
        action="store_true",
        help="also multiply each training sample by a random smooth bias field",
    )
    motion.set_defaults(train=train_motion)
    registration = networks.add_parser(
        "registration",
        help="registration QC of an image pair: RegistrationNet",
        description="Train the registration-QC network on random aligned and misaligned pairs "
        "of the base images (preprocessed once into OUT/samples), the template and synthetic "
        "label maps. --samples-per-image sets the pairs drawn per base image and epoch.",
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_training_arguments(registration)
    registration.add_argument(
        "--pairs",
        type=absolute_path,
        metavar="LIST",
        help="real FLAIR/T1w pairs of one session: a text file of 'FLAIR<tab>T1w' lines; they "
        "are co-registered as the pipeline does and drawn as aligned or misaligned pairs",
    )
    _add_fraction(
        registration,
        "--deform-fraction",
        "give this fraction of the template pairs, aligned or not, a smooth non-linear "
        "deformation with no affine part (largest displacement 2-10 mm): the anatomy, such "
        "as an atrophied brain's, that an affine registration leaves different from the "
        "template, which must not read as misregistration",
    )
    registration.set_defaults(train=train_registration)
    artefact = networks.add_parser(
        "artefact",
        help="artefact presence and a 0-10 quality score on 64 mm tiles: ArtefactNet",
        description="Train the artefact network (ArtefactNet) on random 64^3 tiles of the base "
        "images corrupted with random combinations and severities of bias field, ghosting, "
        "spikes, blur, noise and motion, simulated at native resolution and resampled onto the "
        "1 mm head box.",
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_training_arguments(artefact)
    artefact.add_argument(
        "--tiles-per-volume",
        type=positive_int,
        default=4,
        metavar="N",
        help="random tiles drawn from each sample per epoch (default: %(default)s)",
    )
    _add_fraction(
        artefact,
        "--nod-fraction",
        "make this fraction of the motion nodding on cue (3-12 brief nods of 1-6 degrees, the "
        "head returning after each, as MR-ART's participants moved) instead of held poses",
    )
    _add_strip_fraction(artefact)
    artefact.set_defaults(train=train_artefact)
    return parser


def _add_strip_fraction(parser: ArgumentParser) -> None:
    """``--strip-fraction``, which motion and artefact samples take."""
    _add_fraction(
        parser,
        "--strip-fraction",
        "skull-strip this fraction of the samples, clean and corrupted alike, after the "
        "corruption, with the clean image's brain mask, so that the network must find the "
        "artefacts inside the brain, as in a scan skull-stripped after it was acquired",
    )


def _add_fraction(parser: ArgumentParser, flag: str, help: str) -> None:
    """An option ``flag F`` taking a fraction in [0, 1], 0 by default."""
    parser.add_argument(
        flag,
        type=_number_between(0, 1, closed=True),
        default=0.0,
        metavar="F",
        help=f"{help} (default: %(default)s)",
    )


def _add_training_arguments(parser: ArgumentParser) -> None:
    """The options every sub-command takes."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--images",
        type=_images,
        required=True,
        metavar="FOLDER|LIST",
        help="base images: a folder (every .nii and .nii.gz under it) or a text file with one "
        "path per line (relative to the file; blank lines and '#' comments are ignored)",
    )
    data.add_argument(
        "--out",
        type=absolute_path,
        required=True,
        metavar="DIR",
        help="output folder: samples/, the weights and their model card",
    )
    data.add_argument(
        "--samples-per-image",
        type=positive_int,
        default=8,
        metavar="N",
        help="corrupted samples generated from each base image (default: %(default)s)",
    )
    data.add_argument(
        "--val-fraction",
        type=_number_between(0, 1),
        default=0.2,
        metavar="F",
        help="fraction of the base images whose samples go to validation (default: %(default)s)",
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--epochs",
        type=positive_int,
        default=30,
        metavar="N",
        help="training epochs; the weights of the one with the lowest validation loss are kept "
        "(default: %(default)s)",
    )
    training.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="N",
        help="samples per training step; 2 or more, as batch 1 is slow on CPU "
        "(default: %(default)s)",
    )
    training.add_argument(
        "--lr",
        type=_number_between(0, math.inf),
        default=1e-3,
        metavar="LR",
        help="initial learning rate of Adam, decayed to 0 along a cosine over the epochs "
        "(default: %(default)s)",
    )
    training.add_argument(
        "--crop",
        type=positive_int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="train on random crops of this many voxels (each at least 32) instead of the "
        "whole 96 x 112 x 96 head box: cheaper steps; validation always sees whole volumes",
    )
    training.add_argument(
        "--init-weights",
        type=absolute_path,
        metavar="PT",
        help="start from these weights (e.g. an earlier run's, to train it further) instead "
        "of a random initialisation; their model card must be beside them",
    )
    training.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the samples, the split, the initial weights and the training "
        "(default: %(default)s)",
    )

    execution = parser.add_argument_group("execution")
    execution.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to train; auto: CUDA when available (default: %(default)s)",
    )
    execution.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="processes generating the samples, one base image each (default: %(default)s)",
    )
    execution.add_argument(
        "--loader-workers",
        type=int,
        default=0,
        metavar="N",
        help="processes preparing training batches beside the training one; 1 helps when "
        "pairs are drawn on the fly (registration) (default: %(default)s)",
    )
    execution.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bidsqc-train`` and return its exit code (see ``bidsqc-train --help``).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments, ``sys.argv[1:]`` by default. Usage errors exit with code 2, as argparse
        does.

    Returns
    -------
    int
        0 when the network was trained and saved, 2 for a data or device error.
    """
    parser = build_parser()
    opts = parser.parse_args(list(argv) if argv is not None else None)
    if opts.out.exists() and not opts.out.is_dir():
        parser.error(f"Output folder '{opts.out}' is not a directory.")
    logging.basicConfig(
        level=logging.DEBUG if opts.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        with logging_redirect_tqdm():  # log lines above the progress bars, not through them
            opts.train(opts)
    except SetupError as err:
        LOGGER.error("%s", err)
        return EXIT_USAGE
    return EXIT_OK


def train_motion(opts: Namespace) -> None:
    """Generate (or reuse) the motion samples, train MotionNet and save it with its card.

    Writes ``opts.out/motion.pt`` and ``opts.out/motion.json`` and prints the validation metrics
    of the best epoch.

    Parameters
    ----------
    opts : argparse.Namespace
        The parsed ``bidsqc-train motion`` command line.

    Raises
    ------
    SetupError
        When the device, the samples or the split do not allow training.
    """
    # Imported here, so that --help and usage errors do not wait for torch and ANTs.
    from torch.utils.data import Subset

    from bidsqc.networks import MotionNet
    from bidsqc.training.datasets import MotionSampleDataset
    from bidsqc.training.losses import grade_class_weights
    from bidsqc.training.metrics import motion_metrics
    from bidsqc.training.simulation import LABELS_TABLE
    from bidsqc.training.splits import subject_level_split

    _check_device(opts)
    _check_crop(opts)
    samples = _samples(opts, "motion")
    try:
        train_data = MotionSampleDataset(
            samples, augment=True, bias_field=opts.bias_field, crop=opts.crop
        )
        val_data = MotionSampleDataset(samples)
        train_index, val_index = subject_level_split(
            train_data.sources, opts.val_fraction, opts.seed
        )
    except (FileNotFoundError, ValueError) as err:
        raise SetupError(f"Cannot train on the samples in '{samples}': {err}") from err
    val_images = sorted({train_data.sources[index] for index in val_index})
    _fit_and_save(
        opts,
        task="motion",
        network_cls=MotionNet,
        network={},
        **_grade_rms_loss(grade_class_weights(train_data.grades[train_index])),
        train_set=Subset(train_data, train_index),
        val_set=Subset(val_data, val_index),
        metrics=motion_metrics,
        base_images=sorted(set(train_data.sources)),
        val_images=val_images,
        training_files=[samples / LABELS_TABLE],
        data_settings={
            "samples_per_image": opts.samples_per_image,
            "motion_draw": opts.motion_draw,
            "strip_fraction": opts.strip_fraction,
            "augment": ("bias field, " if opts.bias_field else "")
            + "left-right flip, gamma, scale",
        },
        calibrate=True,
    )


def train_registration(opts: Namespace) -> None:
    """Preprocess (or reuse) the base images, train the registration-QC network on random pairs
    (:class:`bidsqc.training.pairs.RegistrationPairDataset`) and save it with its card.

    Training pairs are drawn anew every epoch from the training subjects' images; validation
    pairs are fixed by the seed and come from the other subjects'. Writes
    ``opts.out/registration.pt`` and ``opts.out/registration.json``.

    Raises
    ------
    SetupError
        When the device, the base images or the split do not allow training.
    """
    import torch

    from bidsqc.geometry import MISREGISTRATION_THRESHOLD_MM
    from bidsqc.networks import RegistrationNet
    from bidsqc.training.metrics import registration_metrics
    from bidsqc.training.pairs import (
        PAIR_KINDS,
        RandomNonlinearDeformation,
        RegistrationPairDataset,
    )
    from bidsqc.training.samples import (
        generate_coregistered_pairs,
        read_coregistered_pairs,
        read_pair_list,
        read_template_space_images,
    )
    from bidsqc.training.simulation import LABELS_TABLE
    from bidsqc.training.splits import subject_level_split, subject_of

    _check_device(opts)
    _refuse_crop(opts)
    samples = _samples(opts, "registration")
    training_files = [samples / LABELS_TABLE]
    try:
        images = read_template_space_images(samples / LABELS_TABLE)
        images, out_of_register = _in_register(images, MISREGISTRATION_THRESHOLD_MM)
        volumes, sources = zip(*images, strict=True)
        train_index, val_index = subject_level_split(sources, opts.val_fraction, opts.seed)
        pairs = {True: [], False: []}  # by whether the T1w's subject validates
        if opts.pairs:
            table = generate_coregistered_pairs(
                read_pair_list(opts.pairs), opts.out / "pairs", n_jobs=opts.jobs
            )
            training_files.append(table)
            val_subjects = {subject_of(sources[i]) for i in val_index}
            for pair in read_coregistered_pairs(table):
                validates = subject_of(pair.reference_image) in val_subjects
                pairs[validates].append((pair.moving, pair.reference))
    except (FileNotFoundError, ValueError) as err:
        raise SetupError(f"Cannot train on the base volumes in '{samples}': {err}") from err
    per_image = opts.samples_per_image
    deformation = RandomNonlinearDeformation(opts.deform_fraction) if opts.deform_fraction else None
    train_set = RegistrationPairDataset(
        [volumes[i] for i in train_index],
        per_image * len(train_index),
        coregistered=pairs[False],
        deformation=deformation,
    )
    val_set = RegistrationPairDataset(
        [volumes[i] for i in val_index],
        per_image * len(val_index),
        seed=opts.seed,
        coregistered=pairs[True],
        deformation=deformation,
    )
    misregistered = train_set.misregistered_fraction
    class_weights = torch.tensor([0.5 / (1 - misregistered), 0.5 / misregistered])
    _fit_and_save(
        opts,
        task="registration",
        network_cls=RegistrationNet,
        network={},
        **_grade_rms_loss(class_weights),
        train_set=train_set,
        val_set=val_set,
        metrics=registration_metrics,
        base_images=sorted(set(sources)),
        val_images=sorted({sources[i] for i in val_index}),
        training_files=training_files,
        data_settings={
            "pairs_per_image_per_epoch": per_image,
            "coregistered_pairs": {"training": len(pairs[False]), "validation": len(pairs[True])},
            "pair_kinds": dict(zip(PAIR_KINDS, train_set.kind_probabilities, strict=True)),
            "aligned_fraction": train_set.aligned_fraction,
            "misalignment_rms_mm": train_set.misalignment.rms_range,
            "misregistration_threshold_mm": MISREGISTRATION_THRESHOLD_MM,
            "left_out_out_of_register_mm": out_of_register,
            "nonlinear_deformation": asdict(deformation) if deformation else None,
        },
    )


def _in_register(
    images: Sequence[tuple[Path, str]], threshold_mm: float
) -> tuple[list[tuple[Path, str]], dict[str, float]]:
    """The ``(volume, base image)`` of ``images`` whose own registration is in register (their
    ``rereg_mm`` below ``threshold_mm``), and the ``rereg_mm`` of the others, which are left
    out with a warning: an aligned pair made from them would be misaligned."""
    from bidsqc.training.samples import rereg_of_volumes

    residuals = rereg_of_volumes([volume for volume, _ in images])
    kept = [image for image, mm in zip(images, residuals, strict=True) if mm < threshold_mm]
    left_out = {
        source: round(mm, 2)
        for (_, source), mm in zip(images, residuals, strict=True)
        if mm >= threshold_mm
    }
    if left_out:
        LOGGER.warning(
            "Leaving out %d image(s) that the pipeline's registration left %s mm or more out "
            "of register (rereg_mm): %s",
            len(left_out),
            threshold_mm,
            ", ".join(f"{source} ({mm} mm)" for source, mm in left_out.items()),
        )
    return kept, left_out


def train_artefact(opts: Namespace) -> None:
    """Generate (or reuse) the artefact samples, train ArtefactNet on random tiles of them and
    save it with its card: ``opts.out/artefact.pt`` and ``opts.out/artefact.json``.

    Training tiles are drawn anew every epoch; validation tiles are fixed by the seed and come
    from the other subjects' samples.

    Raises
    ------
    SetupError
        When the device, the samples or the split do not allow training.
    """
    from bidsqc.networks import ArtefactNet
    from bidsqc.training.datasets import ArtefactTileDataset
    from bidsqc.training.losses import ArtefactLoss
    from bidsqc.training.metrics import artefact_metrics
    from bidsqc.training.samples import artefact_corruption
    from bidsqc.training.simulation import LABELS_TABLE, QUALITY_COST
    from bidsqc.training.splits import subject_level_split

    _check_device(opts)
    _refuse_crop(opts)
    samples = _samples(opts, "artefact")
    per_volume = opts.tiles_per_volume
    try:
        sources = ArtefactTileDataset(samples).sources
        train_index, val_index = subject_level_split(sources, opts.val_fraction, opts.seed)
    except (FileNotFoundError, ValueError) as err:
        raise SetupError(f"Cannot train on the samples in '{samples}': {err}") from err
    loss = ArtefactLoss()
    corruption = artefact_corruption(nod_fraction=opts.nod_fraction)
    _fit_and_save(
        opts,
        task="artefact",
        network_cls=ArtefactNet,
        network={},
        loss=loss,
        loss_settings={
            "focal_gamma": loss.gamma,
            "focal_alpha": loss.alpha,
            "quality_weight": loss.quality_weight,
        },
        train_set=ArtefactTileDataset(samples, train_index, per_volume, augment=True),
        val_set=ArtefactTileDataset(samples, val_index, per_volume, seed=opts.seed),
        metrics=artefact_metrics,
        base_images=sorted(set(sources)),
        val_images=sorted({sources[i] for i in val_index}),
        training_files=[samples / LABELS_TABLE],
        data_settings={
            "samples_per_image": opts.samples_per_image,
            "tiles_per_volume_per_epoch": per_volume,
            "augment": True,
            "artefact_probabilities": dict(
                zip(
                    (type(a).__name__ for a in corruption.artefacts),
                    corruption.probabilities,
                    strict=True,
                )
            ),
            "quality_cost_per_severity": QUALITY_COST,
            "nod_fraction": opts.nod_fraction,
            "strip_fraction": opts.strip_fraction,
        },
        calibrate=True,
    )


def _check_device(opts: Namespace) -> None:
    """Refuse ``--device cuda`` without a GPU before any sample is made."""
    import torch

    from bidsqc.inference.models import resolve_device

    if resolve_device(opts.device).type == "cuda" and not torch.cuda.is_available():
        raise SetupError("No CUDA device is available: use --device cpu (or auto).")


def _refuse_crop(opts: Namespace) -> None:
    """Refuse ``--crop`` for the networks that do not take whole head boxes."""
    if opts.crop is not None:
        raise SetupError(f"--crop applies to the motion network only, not to {opts.network}.")


def _check_crop(opts: Namespace) -> None:
    """Refuse a ``--crop`` smaller than the encoder takes or larger than the head box."""
    from bidsqc.data import HEAD_BOX_SHAPE
    from bidsqc.networks import Conv5Encoder

    if opts.crop is not None:
        smallest = Conv5Encoder().min_size
        if not all(smallest <= c <= n for c, n in zip(opts.crop, HEAD_BOX_SHAPE, strict=True)):
            raise SetupError(
                f"--crop {' '.join(map(str, opts.crop))} must lie between {smallest} voxels and "
                f"the head box, {' x '.join(map(str, HEAD_BOX_SHAPE))}, along each axis."
            )


def _fit_and_save(
    opts: Namespace,
    *,
    task: str,
    network_cls: type[EncoderNet],
    network: Mapping[str, Any],
    loss: Module,
    loss_settings: Mapping[str, Any],
    train_set: Dataset,
    val_set: Dataset,
    metrics: Callable[..., dict[str, float]],
    base_images: Sequence[str],
    val_images: Sequence[str],
    training_files: Sequence[Path],
    data_settings: Mapping[str, Any],
    calibrate: bool = False,
) -> None:
    """Train a ``network_cls`` built with ``network`` (over its defaults) on ``loss`` with
    :func:`bidsqc.training.engine.fit`, and save the best epoch's weights with their model card as
    ``opts.out/<task>.pt``; print its validation metrics. ``loss_settings`` go to the card.

    With ``calibrate``, the decision thresholds are then set on the samples of ``val_images``
    (:func:`bidsqc.training.evaluation.calibration.calibrate_network`) and recorded in the card,
    unless those samples cannot set them (e.g. none is clean: a warning says so)."""
    import torch
    from torch.utils.data import DataLoader

    from bidsqc.inference.models import resolve_device
    from bidsqc.training.cards import file_sha256, save_model
    from bidsqc.training.engine import fit, seed_everything
    from bidsqc.training.evaluation.calibration import (
        calibrate_network,
        training_validation_samples,
    )

    device = resolve_device(opts.device)
    LOGGER.info(
        "Training on %d samples of %d image(s), validating on %d samples of %d image(s).",
        len(train_set),
        len(base_images) - len(val_images),
        len(val_set),
        len(val_images),
    )
    network = {
        name: parameter.default
        for name, parameter in inspect.signature(network_cls).parameters.items()
    } | dict(network)
    seed_everything(opts.seed)
    model = network_cls(**network)
    if opts.init_weights is not None:
        _load_initial_weights(model, opts.init_weights)
    optimiser = torch.optim.Adam(model.parameters(), lr=opts.lr)
    # Cosine decay to 0 over the run: large steps first, fine ones at the end of a short run.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=opts.epochs)
    loader_options = {
        "batch_size": opts.batch_size,
        "pin_memory": device.type == "cuda",
        "num_workers": opts.loader_workers,
    }
    history = fit(
        model,
        optimiser,
        loss,
        DataLoader(train_set, shuffle=True, **loader_options),
        DataLoader(val_set, **loader_options),
        epochs=opts.epochs,
        seed=opts.seed,
        device=str(device),
        metrics=metrics,
        scheduler=scheduler,
    )

    best = history.best
    card = {
        "task": task,
        "training_files": [*base_images, *training_files],
        "hyperparameters": {
            "network": network,
            "optimiser": "Adam",
            "lr": opts.lr,
            "lr_schedule": "cosine annealing to 0 over the epochs, stepped per epoch",
            "batch_size": opts.batch_size,
            "epochs": opts.epochs,
            **data_settings,
            "val_fraction": opts.val_fraction,
            "crop": opts.crop,
            "loss": dict(loss_settings),
        },
        "seed": opts.seed,
        "initial_weights": None
        if opts.init_weights is None
        else {"path": str(opts.init_weights), "sha256": file_sha256(opts.init_weights)},
        "device": str(device),
        "split": {
            "validation_images": list(val_images),
            "training_samples": len(train_set),
            "validation_samples": len(val_set),
        },
        "history": [
            {key: getattr(record, key) for key in ("epoch", "train_loss", "val_loss", "seconds")}
            for record in history.epochs
        ],
        "best_epoch": history.best_epoch,
        "validation_loss": best.val_loss,
        # JSON has no NaN: a metric undefined on this validation set is null.
        "validation_metrics": _json_numbers(best.val_metrics),
    }
    weights = opts.out / f"{task}.pt"
    card_path = save_model(model, weights, card)
    LOGGER.info("Saved '%s' and its model card '%s'.", weights, card_path)
    if calibrate:
        samples = training_validation_samples(opts.out / SAMPLES_DIR, val_images)
        try:
            calibrate_network(model.eval(), samples, weights, opts.batch_size)
        except ValueError as err:
            LOGGER.warning("No thresholds calibrated (%s): the card has none.", err)
        else:
            LOGGER.info("Calibrated the thresholds %s (in the card).", model.thresholds)
    print(f"Validation metrics of epoch {history.best_epoch} (loss {best.val_loss:.4f}):")
    for name, value in best.val_metrics.items():
        print(f"  {name:<22}{value:.4f}")


def _load_initial_weights(model: EncoderNet, weights: Path) -> None:
    """Start ``model`` from ``weights`` and their model card: every layer they share must match;
    layers they lack (a part added to the network since) keep their initialisation, which is
    logged."""
    from bidsqc.inference.models import read_weights

    if not weights.with_suffix(".json").is_file():
        raise SetupError(f"Cannot start from '{weights}': it has no model card beside it")
    try:
        missing, unexpected = model.load_state_dict(read_weights(weights), strict=False)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise SetupError(f"Cannot start from '{weights}': {err}") from err
    if unexpected:
        raise SetupError(
            f"Cannot start from '{weights}': they hold layers this network lacks: "
            + ", ".join(unexpected)
        )
    if missing:
        LOGGER.info(
            "Layers not in '%s' start from their initialisation: %s", weights, ", ".join(missing)
        )


def _samples(opts: Namespace, task: str) -> Path:
    """Generate the samples of ``task`` into ``opts.out/samples``, unless they are there already:
    motion or artefact samples, or each base image once, preprocessed, for registration.

    Returns the folder. Generation costs seconds per sample, so a rerun reuses finished samples
    (see :func:`_reusable_samples`).
    """
    from bidsqc.training.samples import (
        generate_artefact_samples,
        generate_motion_samples,
        generate_template_space_images,
    )
    from bidsqc.training.simulation import LABELS_TABLE

    samples = opts.out / SAMPLES_DIR
    per_image = 1 if task == "registration" else opts.samples_per_image
    settings = {
        "task": task,
        "images": [str(image) for image in opts.images],
        "samples_per_image": per_image,
        "seed": opts.seed,
    }
    if task == "motion":
        settings["motion_draw"] = opts.motion_draw
    if task == "artefact":
        settings["nod_fraction"] = opts.nod_fraction
    if task != "registration":
        settings["strip_fraction"] = opts.strip_fraction
    if _reusable_samples(samples / LABELS_TABLE, settings):
        LOGGER.info("Reusing the samples in '%s' (delete it to generate them again).", samples)
        _warn_of_images_without_sample(opts.images, samples / LABELS_TABLE)
        return samples
    samples.mkdir(parents=True, exist_ok=True)
    (samples / GENERATION_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    LOGGER.info(
        "Generating %d samples of %d images into '%s' with %d process(es); each takes "
        "seconds (registration to the template).",
        per_image * len(opts.images),
        len(opts.images),
        samples,
        opts.jobs,
    )
    if task == "registration":
        generate_template_space_images(opts.images, samples, seed=opts.seed, n_jobs=opts.jobs)
    else:
        generate, options = (
            (generate_motion_samples, {"draw": opts.motion_draw})
            if task == "motion"
            else (generate_artefact_samples, {"nod_fraction": opts.nod_fraction})
        )
        generate(
            opts.images,
            samples,
            n_per_image=per_image,
            seed=opts.seed,
            n_jobs=opts.jobs,
            strip_fraction=opts.strip_fraction,
            **options,
        )
    _warn_of_images_without_sample(opts.images, samples / LABELS_TABLE)
    return samples


def _warn_of_images_without_sample(images: Sequence[Path], table: Path) -> None:
    """Warn of the ``images`` of which the samples ``table`` lists no sample: their
    registrations failed. A missing or empty table is left to the training to report."""
    from bidsqc.training.datasets import read_sample_table

    try:
        rows = read_sample_table(table, ("base_image",))
    except (FileNotFoundError, ValueError):
        return
    without_sample = sorted(set(map(str, images)) - {row["base_image"] for row in rows})
    if without_sample:
        LOGGER.warning(
            "No sample of %d image(s), whose registrations failed: %s",
            len(without_sample),
            ", ".join(without_sample),
        )


def _grade_rms_loss(class_weights: Tensor) -> dict[str, Any]:
    """The ``loss`` and ``loss_settings`` of :func:`_fit_and_save` for a GradeRmsNet."""
    from bidsqc.training.losses import GradeRmsLoss

    loss = GradeRmsLoss(class_weights)
    settings = {
        "class_weights": class_weights.tolist(),
        "sigma_mm": loss.sigma_mm,
        "kl_weight": loss.kl_weight,
    }
    return {"loss": loss, "loss_settings": settings}


#: Settings that samples generated before them did not record, with the value they had.
_UNRECORDED_SETTINGS = {"strip_fraction": 0.0, "nod_fraction": 0.0}


def _reusable_samples(table: Path, settings: Mapping[str, Any]) -> bool:
    """Whether the labels ``table`` of finished samples exists, made with ``settings``.

    The table is written last, once every sample is, so a folder without it is generated again.
    Raises :class:`SetupError` when the samples were made for another network, or with other
    images, samples per image, seed or motion draw: a card must not describe samples that the
    network did not see.
    """
    if not table.is_file():
        return False
    folder = table.parent
    record = folder / GENERATION_FILE
    if not record.is_file():
        LOGGER.warning(
            "Cannot check how the samples in '%s' were made: no %s.", folder, GENERATION_FILE
        )
        return True
    previous = {**_UNRECORDED_SETTINGS, **json.loads(record.read_text())}
    changed = sorted(key for key in settings if previous.get(key) != settings[key])
    if changed:
        raise SetupError(
            f"The samples in '{folder}' were made with another {', '.join(changed)} "
            f"(see '{record}'): use another --out, or delete that folder to generate them again."
        )
    return True


def _json_numbers(values: Mapping[str, float]) -> dict[str, float | None]:
    """``values`` with NaN (an undefined metric) as None, which JSON can hold."""
    return {name: None if math.isnan(value) else value for name, value in values.items()}


def _images(value: str) -> list[Path]:
    """Base images (:func:`~bidsqc.cli.parser.image_list`), at least 2 of them."""
    images = image_list(value)
    if len(images) < 2:
        raise ArgumentTypeError(
            f"'{value}' gives a single image: at least 2 are needed, as training and "
            "validation never share a subject."
        )
    return images


def _number_between(low: float, high: float, *, closed: bool = False) -> Callable[[str], float]:
    """Return an argument type taking a number strictly between ``low`` and ``high``, or from
    ``low`` to ``high`` included if ``closed``."""

    def number(value: str) -> float:
        try:
            parsed = float(value)
        except ValueError:
            parsed = math.nan
        inside = low <= parsed <= high if closed else low < parsed < high  # False for NaN
        if not inside:
            bounds = "from {} to {}" if closed else "between {} and {}"
            raise ArgumentTypeError(f"'{value}' is not a number {bounds.format(low, high)}.")
        return parsed

    return number


if __name__ == "__main__":
    sys.exit(main())
