"""The training side's command lines: ``bidsqc-train`` and ``bidsqc-evaluate``."""
