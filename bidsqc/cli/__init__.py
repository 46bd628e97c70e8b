"""Command-line interface of bidsqc, following the BIDS Apps specification."""

from bidsqc import __version__

__all__ = ["EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "GENERATED_BY"]

#: Exit codes: every image processed; some failed (reported as failed rows); usage error.
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
#: What wrote the outputs, as the reports and ``dataset_description.json`` name it.
GENERATED_BY = f"bidsqc {__version__}"
