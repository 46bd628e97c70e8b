"""The ``bidsqc`` entry point: parse the command line, then run the participant or the group level.

Only the parser is imported up front, so that ``bidsqc --help`` and ``--version`` answer at once;
the level that runs imports the workflow engine and the networks. The participant level starts
the processes that will run its nodes before it imports anything heavy
(:mod:`bidsqc.cli.workers`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from bidsqc.cli.parser import parse_args

__all__ = [
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bidsqc`` and return its exit code (see ``bidsqc --help``)."""
    opts = parse_args(list(argv) if argv is not None else None)
    _configure_logging(opts.verbose)
    if opts.analysis_level == "group":
        from bidsqc.cli.group import run_group

        return run_group(opts)
    from bidsqc.cli.workers import prepare_workers

    plugin = prepare_workers(opts)
    from bidsqc.cli.participant import run_participant

    return run_participant(opts, plugin)


def _configure_logging(verbosity: int) -> None:
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity + 1, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


if __name__ == "__main__":
    sys.exit(main())
