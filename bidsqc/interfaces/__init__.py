"""Thin nipype interfaces over the pure functions of bidsqc (one module per concern).

The base interface, and the input and output specifications they share, are defined here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec

__all__ = ["ImageInputSpec", "ImageOutputSpec", "QCInterface"]


class ImageInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="input image")


class ImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="output file")


class QCInterface(SimpleInterface):
    """A bidsqc node's interface: its warnings say which node, and so which image, they are of.

    A node runs in its own directory, named after the node inside the image's workflow
    (``anat_qc_sub_01_T1w_wf/measures``), most often in a process that has no logging of its own
    (a MultiProc worker, a SLURM job), where a warning such as "snr: a tissue mask has < 2
    voxels" would otherwise reach the console bare among those of every other image.
    """

    def run(self, cwd=None, ignore_exception=None, **inputs):
        with _named_after_node(Path(cwd or os.getcwd())):
            return super().run(cwd=cwd, ignore_exception=ignore_exception, **inputs)


@contextmanager
def _named_after_node(node_dir: Path) -> Iterator[None]:
    """Send bidsqc's log records to the console prefixed with the node of ``node_dir``, unless
    this process has logging configured (the command's own process, whose records stay as they
    are)."""
    logger = logging.getLogger("bidsqc")
    if logger.hasHandlers():
        yield
        return
    node = ".".join(node_dir.parts[-2:])
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(name)s %(levelname)s: [{node}] %(message)s")
    )
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
