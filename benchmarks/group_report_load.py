"""How long does a group report of many images take to load in a browser?

    python benchmarks/group_report_load.py --n-images 2000 --repeats 3

Generates a group table of ``--n-images`` T1w rows (every QC column, values drawn at random
around those of the demo, 2 % failed), renders its group report, and opens it in headless
Debian Chromium (``/usr/bin/chromium`` with ``/usr/bin/chromedriver``, through selenium). It
prints the file's size and, for each load, the time until the page's load event and until the
review queue's first page is in the table, from the navigation start (the browser's own
Navigation Timing). The thumbnails are not generated: each row's image fails to load and is
removed, as for an image without one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from bidsqc.decisions import DEFAULT_THRESHOLDS, decide
from bidsqc.outputs.columns import QC_COLUMNS
from bidsqc.reports.group import render_group_report

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def group_table(n_images: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n_images`` rows of every QC column, plausible values, 2 % of them failed."""
    rows = []
    for i in range(n_images):
        subject = f"sub-{i:05d}"
        row = {
            "filename": f"{subject}/anat/{subject}_T1w.nii.gz",
            "participant_id": subject,
            "session_id": "n/a",
            "modality": "T1w",
            "status": "ok",
            "error": "n/a",
            "dataset": "raw",
        }
        for column, info in QC_COLUMNS.items():
            if info.units == "probability":
                row[column] = float(rng.beta(1, 6))
            else:
                row[column] = float(rng.lognormal(0, 0.3))
        row["motion_grade"] = int(rng.choice(3, p=(0.8, 0.15, 0.05)))
        row["p_motion_none"] = float(rng.uniform(0.2, 1.0))
        row["quality_score"] = float(rng.uniform(3, 10))
        if rng.uniform() < 0.02:
            row = {
                key: (value if key in row and not isinstance(value, float) else np.nan)
                for key, value in row.items()
            }
            row.update(status="failed", error="check_image: ImageCheckError: empty file")
        rows.append(row | decide(row, DEFAULT_THRESHOLDS, QC_COLUMNS))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        table = group_table(args.n_images, np.random.default_rng(args.seed))
        report = render_group_report(
            table,
            "T1w",
            QC_COLUMNS,
            Path(tmp) / "group_T1w.html",
            generated_by="benchmark",
            dataset="benchmark",
        )
        print(f"{args.n_images} images: {report.stat().st_size / 1e6:.2f} MB")
        options = Options()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            loads, queues = [], []
            for _ in range(args.repeats):
                driver.get(report.as_uri())
                timing = driver.execute_script(
                    "const [entry] = performance.getEntriesByType('navigation');"
                    "const rows = document.querySelectorAll('#queue tbody tr').length;"
                    "const [queue] = performance.getEntriesByName('queue-rendered');"
                    "return [entry.loadEventEnd, rows, queue.startTime];"
                )
                loads.append(timing[0] / 1000)
                queues.append(timing[2] / 1000)
                print(
                    f"load event {loads[-1]:.3f} s, queue rendered {queues[-1]:.3f} s, "
                    f"{timing[1]} rows on the first page"
                )
        finally:
            driver.quit()
        print(
            f"median: load event {statistics.median(loads):.3f} s, "
            f"queue {statistics.median(queues):.3f} s"
        )


if __name__ == "__main__":
    main()
