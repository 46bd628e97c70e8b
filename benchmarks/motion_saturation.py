"""How much does a k-space motion artefact grow with the motion's Jenkinson RMS?

    python benchmarks/motion_saturation.py --images val.txt --n-images 3 --repeats 2

For real base images at native resolution, motion of each level 1-8 (degrees and mm) is
simulated as the evaluation protocol draws it (``RandomMotion((l-1, l+1), (l-1, l+1))``, the
protocol of ``bidsqc-evaluate motion``) and as training draws it (``RandomMotionLevel``, random
signs). The unmoved pose fills the k-space centre, so the image stays in place and the whole
artefact is the difference from the clean image: it prints, for each sample, the RMS target
and the relative error ``||moved - clean|| / ||clean||`` inside the head, then the Spearman of
the two per way of drawing. A small Spearman means the strength of the artefact says little
about the RMS: what the motion network can read off an image to estimate ``motion_mm``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bidsqc.loading import load_anatomical
from bidsqc.training.metrics import spearman
from bidsqc.training.samples import RandomMotionLevel
from bidsqc.training.simulation import RandomMotion

LEVELS = range(1, 9)


def relative_error(moved: np.ndarray, clean: np.ndarray) -> float:
    """``||moved - clean|| / ||clean||`` inside the head (above 10 % of the 99th percentile)."""
    head = clean > 0.1 * np.percentile(clean[clean > 0], 99)
    return float(np.linalg.norm((moved - clean)[head]) / np.linalg.norm(clean[head]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="text file, one image a line")
    parser.add_argument("--n-images", type=int, default=3, help="spread evenly over the list")
    parser.add_argument("--repeats", type=int, default=2, help="samples per level and way")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    images = args.images.read_text().split()
    images = images[:: max(1, len(images) // args.n_images)][: args.n_images]
    rng = np.random.default_rng(args.seed)
    rows = []
    for path in images:
        img = load_anatomical(path)
        clean = img.get_fdata(dtype=np.float32)
        for level in LEVELS:
            span = (level - 1, level + 1)
            draws = {
                "protocol": RandomMotion(span, span),
                "training": RandomMotionLevel((level, level)),
            }
            for kind, draw in draws.items():
                for _ in range(args.repeats):
                    motion = draw.sample(rng)
                    moved = np.asarray(motion(img).dataobj, dtype=np.float32)
                    row = {
                        "image": Path(path).name,
                        "level": level,
                        "drawn_as": kind,
                        "rms_mm": motion.strength,
                        "relative_error": relative_error(moved, clean),
                    }
                    rows.append(row)
                    print(
                        f"{row['image']} level {level} ({kind}): {row['rms_mm']:.2f} mm RMS, "
                        f"relative error {row['relative_error']:.4f}",
                        flush=True,
                    )
    table = pd.DataFrame(rows)
    print(table.groupby(["drawn_as", "level"])[["rms_mm", "relative_error"]].median().round(3))
    for kind, group in table.groupby("drawn_as"):
        rho = spearman(group["rms_mm"], group["relative_error"])
        print(f"Spearman(rms_mm, relative_error), drawn as {kind}: {rho:.3f}")


if __name__ == "__main__":
    main()
