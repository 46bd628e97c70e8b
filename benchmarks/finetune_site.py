"""Does fine-tuning on a site's labels beat the bundled model, and training from scratch, on
held-out participants of that site?

    python benchmarks/finetune_site.py --labels site/ratings.tsv --held-out site/held_out.tsv \
        --qc-dir site/out --task motion

Both label files are in any format ``bidsqc-finetune`` reads (``benchmarks/site_shift.py``
writes them), and every image of both must have been through ``bidsqc ... participant`` into
``--qc-dir``. The models are trained on every image of ``--labels`` as ``bidsqc-finetune``
trains its final model (same code, same settings), then scored on the images of
``--held-out``, whose participants none of them saw: balanced accuracy over the three classes,
and the confusion matrix of each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bidsqc.data import MODELS_DIR, read_model_card
from bidsqc.inference.models import load_network
from bidsqc.training.finetune import (
    TASKS,
    FineTuneSettings,
    fine_tune,
    grades,
    label_images,
    train_from_scratch,
)
from bidsqc.training.labels import read_labels
from bidsqc.training.metrics import balanced_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, nargs="+", required=True)
    parser.add_argument("--held-out", type=Path, nargs="+", required=True)
    parser.add_argument("--qc-dir", type=Path, required=True)
    parser.add_argument("--task", choices=TASKS, default="motion")
    parser.add_argument("--base", type=Path, default=MODELS_DIR / "motion.pt")
    parser.add_argument("--scratch-epochs", type=int, default=FineTuneSettings().scratch_epochs)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    base = load_network(args.base)
    network_args = read_model_card(args.base)["hyperparameters"]["network"]
    settings = FineTuneSettings(scratch_epochs=args.scratch_epochs, seed=args.seed)
    train = label_images(read_labels(args.labels)[1], args.qc_dir, base)
    test = label_images(read_labels(args.held_out)[1], args.qc_dir, base)
    overlap = set(train.participants) & set(test.participants)
    if overlap:
        parser.error(f"participants in both label sets: {sorted(overlap)}")
    targets = train.targets(args.task)
    models = {
        "pretrained": base,
        "fine-tuned (head)": fine_tune(
            base, network_args, train.embeddings, targets, "head", settings
        ),
        "fine-tuned (embedding)": fine_tune(
            base, network_args, train.embeddings, targets, "embedding", settings
        ),
        "from scratch": train_from_scratch(train.volumes, targets, settings),
    }
    truth = test.targets(args.task)
    classes = TASKS[args.task]
    print(
        f"{len(targets)} labelled images of {len(set(train.participants))} participants, "
        f"{len(truth)} held-out images of {len(set(test.participants))} participants"
    )
    rows = []
    for name, model in models.items():
        predicted = grades(model, test.volumes)
        rows.append({"model": name, "balanced_accuracy": balanced_accuracy(truth, predicted)})
        confusion = pd.crosstab(
            pd.Categorical([classes[i] for i in truth], classes),
            pd.Categorical([classes[i] for i in predicted], classes),
            rownames=["truth"],
            colnames=["predicted"],
            dropna=False,
        )
        print(f"\n{name}:\n{confusion}")
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("\nchance:", f"{1 / len(np.unique(truth)):.3f}")


if __name__ == "__main__":
    main()
