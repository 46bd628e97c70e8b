"""Thin nipype interfaces over the pure functions of bidsqc (one module per concern)."""
