"""The ``bidsqc-evaluate`` command: measure a network of bidsqc on images it never saw.

``bidsqc-evaluate motion`` runs the motion protocol of :mod:`bidsqc.training.evaluation`:
simulated motion ranges on held-out images (``--images``). ``bidsqc-evaluate registration``
misaligns held-out images (against the template) and real FLAIR/T1w pairs (``--pairs``) by known
rigid transforms, and compares the network with the classical measures. ``bidsqc-evaluate
artefact`` corrupts held-out images with each artefact at two severities. ``bidsqc-evaluate
real`` runs the whole app on a labelled real BIDS dataset (``--bids`` with ``--labels``) and
compares every output with the labels. See ``docs/benchmarks.md`` for the results.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from argparse import ArgumentParser, Namespace, RawDescriptionHelpFormatter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bidsqc import __version__
from bidsqc.cli import EXIT_OK, EXIT_USAGE
from bidsqc.cli.parser import absolute_path, image_list, positive_int

__all__ = [
    "build_parser",
    "evaluate_artefact",
    "evaluate_motion",
    "evaluate_real",
    "evaluate_registration",
    "main",
    "markdown_table",
]

LOGGER = logging.getLogger("bidsqc.evaluate")

_EPILOG = """\
outputs (in --out):
  samples/[<condition>/], pairs/  the preprocessed samples (reused by a rerun)
  predictions.tsv, metrics.tsv, metrics.md  per sample, and per source and range
  bidsqc/, real_scans.tsv, real_summary.tsv, real_agreement.tsv, real.md  real
  calibration.tsv  with --calibrate, the predictions the thresholds were set on

exit codes:
  0  evaluated
  2  usage or data error"""


def build_parser() -> ArgumentParser:
    """Return the parser of the ``bidsqc-evaluate`` command line."""
    parser = ArgumentParser(
        prog="bidsqc-evaluate",
        description="Evaluate a network of bidsqc on images it was not trained on.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"bidsqc {__version__}")
    networks = parser.add_subparsers(dest="network", required=True, metavar="NETWORK")
    motion = networks.add_parser(
        "motion",
        help="the motion network: Table-2 motion ranges",
        description="Evaluate the motion network. --images: each image clean and moved in "
        "the ranges (2-4), (4-6) and (6-8) degrees and mm (Loizillon et al. 2023, Table 2), "
        "and by an RMS drawn in 0-4 mm, where real head motion is.",
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_common_arguments(motion)
    _add_calibrate_argument(
        motion,
        "the lowest probability of motion (1 - p_motion_none) that calls motion in at most 2 %% "
        "of the unmoved samples",
        "",
    )
    motion.set_defaults(evaluate=evaluate_motion)

    registration = networks.add_parser(
        "registration",
        help="the registration-QC network: known rigid misalignments, against classical measures",
        description="Evaluate the registration-QC network. --images: each image preprocessed, "
        "as is and misaligned by rigid transforms of 0.5-2, 2-4, 4-8 and 8-20 mm RMS, against "
        "the template. --pairs: real FLAIR/T1w pairs co-registered by the pipeline, the FLAIR "
        "misaligned the same way. mask_dice, mask_hd95_mm and nmi are scored alongside.",
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_common_arguments(registration)
    registration.add_argument(
        "--pairs",
        type=absolute_path,
        metavar="LIST",
        help="real FLAIR/T1w pairs of one session: a text file of 'FLAIR<tab>T1w' lines",
    )
    registration.set_defaults(evaluate=evaluate_registration)

    artefact = networks.add_parser(
        "artefact",
        help="the artefact network: each artefact alone at mild and moderate severity",
        description="Evaluate the artefact network. --images: each image clean, and with "
        "ghosting, a spike, a bias field, noise and blur alone at severity 0.3 (mild) and 0.6 "
        "(moderate), each registered and resampled onto the 1 mm head box as the pipeline does.",
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_common_arguments(artefact)
    _add_calibrate_argument(
        artefact,
        "for each artefact, the lowest threshold that flags at most 2 %% of the samples without it",
        ", and thresholds.json, as a --thresholds file",
    )
    artefact.set_defaults(evaluate=evaluate_artefact)

    real = networks.add_parser(
        "real",
        help="real scans with labels, through the whole app",
        description="Run bidsqc participant and group on a BIDS dataset of real scans, then "
        "compare its tables with the labels: per source, the share processed, registered, "
        "flagged misregistered and excluded; per source and column, the Spearman and AUCs "
        "against the scores and the scans of one person put in the order of their scores.",
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    real.add_argument("--bids", type=absolute_path, required=True, metavar="DIR")
    real.add_argument(
        "--labels",
        type=absolute_path,
        required=True,
        metavar="TSV",
        help="bids_name, score (1 clean, 2 mild, 3 severe, or n/a) and optionally source: "
        "MR-ART's derivatives/scores.tsv as it is",
    )
    real.add_argument("--out", type=absolute_path, required=True, metavar="DIR")
    real.add_argument(
        "--nprocs", type=positive_int, default=2, metavar="N", help="bidsqc's --nprocs"
    )
    real.add_argument(
        "--models-dir",
        type=absolute_path,
        metavar="DIR",
        help="bidsqc's --models-dir: networks trained or fine-tuned (motion.pt with its card, "
        "...), evaluated instead of the bundled ones of the same name",
    )
    real.set_defaults(evaluate=evaluate_real)
    return parser


def _add_calibrate_argument(parser: ArgumentParser, rule: str, also_writes: str) -> None:
    parser.add_argument(
        "--calibrate",
        type=absolute_path,
        metavar="SAMPLES",
        help="the samples folder of the network's training run: predict the samples of its "
        f"validation images (listed in the model card), set the decision thresholds ({rule}), "
        f"write them into the model card of --weights, and write calibration.tsv{also_writes}; "
        "--images are then scored with them",
    )


def _add_common_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--images",
        type=image_list,
        metavar="FOLDER|LIST",
        help="held-out images: a folder or a text file listing them",
    )
    parser.add_argument("--out", type=absolute_path, required=True, metavar="DIR")
    parser.add_argument(
        "--weights",
        type=absolute_path,
        metavar="PT",
        help="weights to evaluate, with their model card beside them (default: the bundled)",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=2,
        metavar="N",
        help="corrupted samples per image and range (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the network runs"
    )
    parser.add_argument(
        "--jobs", type=positive_int, default=1, metavar="N", help="processes preprocessing"
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="N")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bidsqc-evaluate`` and return its exit code."""
    parser = build_parser()
    opts = parser.parse_args(list(argv) if argv is not None else None)
    if opts.network == "motion" and opts.images is None and opts.calibrate is None:
        parser.error("give --images, --calibrate, or both")
    elif opts.network == "registration" and opts.images is None and opts.pairs is None:
        parser.error("give --images, --pairs, or both")
    elif opts.network == "artefact" and opts.images is None and opts.calibrate is None:
        parser.error("give --images, --calibrate, or both")
    if getattr(opts, "calibrate", None) is not None and opts.weights is None:
        parser.error("--calibrate writes into the model card of --weights: give them")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    try:
        opts.evaluate(opts)
    except (OSError, ValueError) as err:
        LOGGER.error("%s", err)
        return EXIT_USAGE
    return EXIT_OK


def evaluate_motion(opts: Namespace) -> None:
    """Run the requested motion protocols and write their tables into ``opts.out``."""
    from bidsqc.inference.motion import UNCALIBRATED_MOTION_THRESHOLD
    from bidsqc.training.evaluation.motion import (
        generate_protocol_samples,
        motion_protocol_metrics,
        predict_motion_samples,
    )

    network = _network(opts)
    if opts.calibrate is not None:
        _calibrate(network, opts)
    elif "p_motion" not in network.thresholds:
        LOGGER.warning(
            "%s has no calibrated motion threshold: grading at %s (see --calibrate).",
            _weights(opts),
            UNCALIBRATED_MOTION_THRESHOLD,
        )
    if opts.images is not None:
        samples = generate_protocol_samples(
            opts.images,
            opts.out / "samples",
            repeats=opts.repeats,
            seed=opts.seed,
            n_jobs=opts.jobs,
        )
        table = predict_motion_samples(network, samples, opts.batch_size)
        table.to_csv(opts.out / "predictions.tsv", sep="\t", index=False, float_format="%.4g")
        _write_metrics(motion_protocol_metrics(table), opts)


def evaluate_real(opts: Namespace) -> None:
    """Run bidsqc on the labelled real dataset and write the comparison into ``opts.out``."""
    from bidsqc.training.evaluation.real import (
        read_real_labels,
        real_scan_agreement,
        real_scan_summary,
        real_scan_table,
        run_bidsqc,
    )

    labels = read_real_labels(opts.labels)
    opts.out.mkdir(parents=True, exist_ok=True)
    table = real_scan_table(
        run_bidsqc(opts.bids, opts.out / "bidsqc", opts.nprocs, opts.models_dir), labels
    )
    summary, agreement = real_scan_summary(table), real_scan_agreement(table)
    table.to_csv(opts.out / "real_scans.tsv", sep="\t", index=False, float_format="%.4g")
    summary.to_csv(opts.out / "real_summary.tsv", sep="\t", index=False, float_format="%.4f")
    agreement.to_csv(opts.out / "real_agreement.tsv", sep="\t", index=False, float_format="%.4f")
    report = markdown_table(summary) + "\n" + markdown_table(agreement)
    (opts.out / "real.md").write_text(report)
    print(report)


def evaluate_registration(opts: Namespace) -> None:
    """Run the registration protocol and write its tables into ``opts.out``."""
    from bidsqc.training.evaluation.registration import (
        registration_metrics_table,
        registration_protocol,
    )
    from bidsqc.training.samples import (
        generate_coregistered_pairs,
        generate_template_space_images,
        read_coregistered_pairs,
        read_pair_list,
        read_template_space_images,
    )
    from bidsqc.training.simulation import LABELS_TABLE

    network = _network(opts)
    volumes = []
    if opts.images is not None:
        labels = generate_template_space_images(
            opts.images, opts.out / "samples", seed=opts.seed, n_jobs=opts.jobs
        )
        for volume, base_image in read_template_space_images(labels):
            volumes.append(("template", base_image, volume, None))
    if opts.pairs is not None:
        table = generate_coregistered_pairs(
            read_pair_list(opts.pairs), opts.out / "pairs", n_jobs=opts.jobs
        )
        for pair in read_coregistered_pairs(table):
            volumes.append(("coregistered", pair.moving_image, pair.moving, pair.reference))
    if not volumes:
        raise ValueError(f"no image could be preprocessed (see {LABELS_TABLE} in {opts.out})")
    table = registration_protocol(
        network, volumes, repeats=opts.repeats, seed=opts.seed, batch_size=opts.batch_size
    )
    table.to_csv(opts.out / "predictions.tsv", sep="\t", index=False, float_format="%.4g")
    _write_metrics(registration_metrics_table(table), opts)


def evaluate_artefact(opts: Namespace) -> None:
    """Run the artefact protocol and write its tables into ``opts.out``."""
    from bidsqc.training.evaluation.artefact import (
        artefact_metrics_table,
        artefact_summary,
        generate_artefact_protocol_samples,
        predict_artefact_samples,
    )

    network = _network(opts)
    if opts.calibrate is not None:
        thresholds = _calibrate(network, opts)
        _write_json(
            {column: {"review": value} for column, value in thresholds.items()},
            opts.out / "thresholds.json",
        )
    if opts.images is None:
        return
    if not network.thresholds:
        raise ValueError(f"{_weights(opts)} has no calibrated thresholds: give --calibrate")
    samples = generate_artefact_protocol_samples(
        opts.images, opts.out / "samples", repeats=opts.repeats, seed=opts.seed, n_jobs=opts.jobs
    )
    table = predict_artefact_samples(network, samples)
    table.to_csv(opts.out / "predictions.tsv", sep="\t", index=False, float_format="%.4g")
    _write_metrics(artefact_metrics_table(table, network.thresholds), opts)
    _write_json(artefact_summary(table, network.thresholds), opts.out / "summary.json")


def _weights(opts: Namespace) -> Path:
    """The weights to evaluate: ``--weights``, or the bundled ones."""
    from bidsqc.data import MODELS_DIR

    return opts.weights or MODELS_DIR / f"{opts.network}.pt"


def _calibrate(network, opts: Namespace) -> dict[str, float]:
    """Calibrate ``network`` on the samples of ``--calibrate`` (a training run's samples folder)
    made from the validation images of its model card: write ``calibration.tsv`` and record the
    thresholds in the card (and on ``network``). Returns the thresholds."""
    from bidsqc.data import read_model_card
    from bidsqc.training.evaluation.calibration import (
        calibrate_network,
        training_validation_samples,
    )

    validation_images = read_model_card(opts.weights)["split"]["validation_images"]
    samples = training_validation_samples(opts.calibrate, validation_images)
    table = calibrate_network(network, samples, opts.weights, opts.batch_size)
    table.to_csv(opts.out / "calibration.tsv", sep="\t", index=False)
    LOGGER.info(
        "Calibrated thresholds %s, recorded in the model card of '%s'.",
        network.thresholds,
        opts.weights,
    )
    return network.thresholds


def _network(opts: Namespace):
    """The network to evaluate (:func:`_weights`); creates ``opts.out``."""
    from bidsqc.inference.models import load_network

    opts.out.mkdir(parents=True, exist_ok=True)
    return load_network(_weights(opts), opts.device)


def _write_json(metrics: dict, path: Path) -> None:
    """Write and print ``metrics`` as JSON, an undefined (NaN) value as null."""
    text = json.dumps(
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()},
        indent=2,
    )
    path.write_text(text + "\n")
    print(text)


def _write_metrics(metrics: pd.DataFrame, opts: Namespace) -> None:
    metrics.to_csv(opts.out / "metrics.tsv", sep="\t", index=False, float_format="%.4f")
    (opts.out / "metrics.md").write_text(markdown_table(metrics))
    print(markdown_table(metrics))


def markdown_table(table: pd.DataFrame) -> str:
    """A table as Markdown, numbers to 4 decimals and missing values blank (for the docs)."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
