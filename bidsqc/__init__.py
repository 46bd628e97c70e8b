"""bidsqc: automated quality control of T1w and FLAIR brain MRI, as a BIDS App."""

from bidsqc.__about__ import __version__

__all__ = ["__version__"]
