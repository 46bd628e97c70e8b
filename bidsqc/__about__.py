"""Version and identity of the package, kept apart so that it imports nothing."""

__version__ = "0.1.0"
__packagename__ = "bidsqc"
__url__ = "https://github.com/bidsqc/bidsqc"
