"""The derivatives' ``dataset_description.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bidsqc import __version__
from bidsqc.__about__ import __packagename__, __url__
from bidsqc.outputs.files import write_text_atomically
from bidsqc.outputs.tables import NA

__all__ = [
    "write_dataset_description",
]


def write_dataset_description(out_dir: str | os.PathLike, bids_dir: str | os.PathLike) -> None:
    """Write ``dataset_description.json`` and ``.bidsignore`` at the derivatives root.

    ``GeneratedBy`` names bidsqc, its version and code URL, and the container when the image
    sets ``BIDSQC_CONTAINER_TYPE`` and ``BIDSQC_CONTAINER_TAG``. ``SourceDatasets`` carries the
    raw dataset's DOI when its description has one, and its location otherwise.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generated_by = {"Name": __packagename__, "Version": __version__, "CodeURL": __url__}
    if os.getenv("BIDSQC_CONTAINER_TYPE"):
        generated_by["Container"] = {
            "Type": os.environ["BIDSQC_CONTAINER_TYPE"],
            "Tag": os.getenv("BIDSQC_CONTAINER_TAG", NA),
        }
    source = {"URL": Path(bids_dir).absolute().as_uri()}
    source_description = Path(bids_dir) / "dataset_description.json"
    try:
        doi = json.loads(source_description.read_text()).get("DatasetDOI")
    except (OSError, json.JSONDecodeError):
        doi = None
    if doi:
        source = {"DOI": doi if doi.startswith("doi:") else f"doi:{doi}"}
    description = {
        "Name": "bidsqc: quality control of anatomical MRI",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [source],
    }
    write_text_atomically(
        out_dir / "dataset_description.json", json.dumps(description, indent=2) + "\n"
    )
    write_text_atomically(out_dir / ".bidsignore", "work/\nlogs/\n*.html\n*/figures/\ngroup_*\n")
    (out_dir / "logs").mkdir(exist_ok=True)
