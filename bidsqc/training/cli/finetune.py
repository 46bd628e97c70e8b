"""The ``bidsqc-finetune`` command: fine-tune the motion network on a site's own labels.

    bidsqc-finetune --labels bidsqc_ratings.tsv --qc-dir OUT --task motion --method head \
        --out site_models

It reads the images that a participant run preprocessed into ``OUT`` (it never preprocesses),
cross-validates with folds grouped by participant (the fine-tuned model beside the bundled one
and one trained from scratch on the same labels), then trains on every label and writes
``MODELS_DIR/<task>.pt`` with its model card. ``bidsqc BIDS OUT participant --models-dir
MODELS_DIR`` then uses it. See :mod:`bidsqc.training.finetune` for the methods.
"""

from __future__ import annotations

import logging
import sys
from argparse import ArgumentParser, Namespace, RawDescriptionHelpFormatter
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bidsqc import __version__
from bidsqc.cli import EXIT_OK, EXIT_USAGE
from bidsqc.cli.parser import absolute_path, positive_int
from bidsqc.data import MODELS_DIR
from bidsqc.training.cli.evaluate import markdown_table

__all__ = ["build_parser", "main"]

LOGGER = logging.getLogger("bidsqc.finetune")

_EPILOG = """\
label formats (found from the files' contents):
  bidsqc ratings TSV        a report's export: filename, rating, artefacts, ...
  MRIQC rating-widget JSON  one JSON per image: rating 1-4, artifacts
  MR-ART scores.tsv         bids_name, score 1-3

outputs (in --out):
  <task>.pt, <task>.json    the fine-tuned network and its model card
  <task>_cv.tsv, _cv.md     balanced accuracy per fold of each model

exit codes:
  0  fine-tuned
  2  usage or data error (e.g. a label that matches no image in --qc-dir)"""


def build_parser() -> ArgumentParser:
    """Return the parser of the ``bidsqc-finetune`` command line."""
    from bidsqc.training.finetune import METHODS, TASKS, FineTuneSettings

    defaults = FineTuneSettings()
    parser = ArgumentParser(
        prog="bidsqc-finetune",
        description="Fine-tune bidsqc's motion network on your own labels, encoder frozen.",
        epilog=_EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"bidsqc {__version__}")
    parser.add_argument("--labels", type=absolute_path, nargs="+", required=True, metavar="FILE")
    parser.add_argument(
        "--qc-dir",
        type=absolute_path,
        required=True,
        metavar="OUT",
        help="output directory of a participant run over the labelled images",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        required=True,
        help="motion: grade none, mild, severe; quality: usable, questionable, unusable",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="head",
        help="head: retrain the trunk and grade head (Loizillon); embedding: a linear probe of "
        "the frozen embeddings (Bricout). Default: %(default)s",
    )
    parser.add_argument("--out", type=absolute_path, required=True, metavar="MODELS_DIR")
    parser.add_argument(
        "--base",
        type=absolute_path,
        default=MODELS_DIR / "motion.pt",
        metavar="WEIGHTS",
        help="the pretrained network (default: the bundled motion network)",
    )
    parser.add_argument("--folds", type=positive_int, default=5, help="default: %(default)s")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    parser.add_argument(
        "--scratch-epochs",
        type=int,
        default=defaults.scratch_epochs,
        help="epochs of the model trained from scratch for comparison; 0 skips it "
        "(default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bidsqc-finetune`` and return its exit code."""
    opts = build_parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    try:
        fine_tune_site(opts)
    except (OSError, ValueError) as err:
        LOGGER.error("%s", err)
        return EXIT_USAGE
    return EXIT_OK


def fine_tune_site(opts: Namespace) -> Path:
    """Cross-validate, fine-tune on every label, and write the model and its card."""
    from bidsqc.data import read_model_card
    from bidsqc.inference.models import load_network
    from bidsqc.training.cards import file_sha256, save_model
    from bidsqc.training.finetune import (
        TASKS,
        FineTuneSettings,
        cross_validate,
        fine_tune,
        label_images,
    )
    from bidsqc.training.labels import read_labels

    found, labels = read_labels(opts.labels)
    LOGGER.info(
        "Read %d labels from %s (%s).",
        len(labels),
        ", ".join(path.name for path in opts.labels),
        found,
    )
    base_card = read_model_card(opts.base)
    base = load_network(opts.base)
    network_args = base_card["hyperparameters"]["network"]
    settings = FineTuneSettings(
        epochs=opts.epochs, scratch_epochs=opts.scratch_epochs, seed=opts.seed
    )
    images = label_images(labels, opts.qc_dir, base, opts.progress)
    classes = TASKS[opts.task]
    counts = Counter(classes[target] for target in images.targets(opts.task))
    participants = sorted(set(images.participants))
    LOGGER.info(
        "Fine-tuning on %d images of %d participants: %s.",
        len(images.labels),
        len(participants),
        ", ".join(f"{counts[name]} {name}" for name in classes),
    )
    opts.out.mkdir(parents=True, exist_ok=True)
    cv = None
    if len(participants) > 1:
        cv = cross_validate(
            base, network_args, images, opts.task, opts.method, settings, opts.folds, opts.progress
        )
        _write_cv_table(cv, opts.out / f"{opts.task}_cv")
    else:
        LOGGER.warning(
            "Only %s is labelled, so there is no cross-validation: nothing says whether the "
            "fine-tuned model beats the bundled one. Label images of two participants or more.",
            participants[0],
        )

    model = fine_tune(
        base, network_args, images.embeddings, images.targets(opts.task), opts.method, settings
    )
    weights = opts.out / f"{opts.task}.pt"
    card = {
        "task": opts.task,
        "classes": list(classes),
        "method": opts.method,
        "base_weights": {"path": str(opts.base), "sha256": file_sha256(opts.base)},
        "labels": {
            "format": found,
            "files": [{"path": str(path), "sha256": file_sha256(path)} for path in opts.labels],
            "counts": {name: counts[name] for name in classes},
            "images": len(images.labels),
            "participants": len(participants),
        },
        "training_files": list(opts.labels),
        "hyperparameters": {
            "network": network_args,
            "finetune": settings.__dict__,
        },
        "cross_validation": cv,
        "validation_metrics": (
            {f"ba_{name}": value for name, value in cv["pooled"].items()} if cv else {}
        ),
        "seed": opts.seed,
    }
    card_path = save_model(model, weights, card)
    LOGGER.info("Wrote %s and its model card %s.", weights, card_path.name)
    return weights


def _write_cv_table(cv: dict, stem: Path) -> None:
    """The cross-validation's balanced accuracies as ``<stem>.tsv`` and ``.md``, and logged."""
    blank = {"participants": "", "n_train": "", "n_test": ""}
    table = pd.DataFrame(
        [{**row, "participants": " ".join(row["participants"])} for row in cv["folds"]]
        + [{"fold": "pooled", **blank, **cv["pooled"]}, {"fold": "mean", **blank, **cv["mean"]}]
    )
    table.to_csv(stem.with_suffix(".tsv"), sep="\t", index=False, na_rep="n/a")
    stem.with_suffix(".md").write_text(markdown_table(table))
    LOGGER.info("Balanced accuracy, folds grouped by participant:\n%s", markdown_table(table))


if __name__ == "__main__":
    sys.exit(main())
