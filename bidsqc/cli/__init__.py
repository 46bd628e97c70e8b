"""Command-line interface of bidsqc, following the BIDS Apps specification."""
