"""Files of an output directory that several jobs share.

The participant jobs of a SLURM array write into one output directory at once: the same
``dataset_description.json``, ``logs/`` and model cards, and the group level reads what they
wrote. Every file is therefore written beside its destination under a hidden name unique to the
writer, then renamed onto it: a reader sees the old file or the new one, never half of one, and
an interrupted job leaves no truncated file behind. What must be read, then written, as a whole
(the methods of every participant in the directory) is done under :func:`output_lock`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "LOCK_NAME",
    "atomic_path",
    "copy_atomically",
    "output_lock",
    "write_text_atomically",
]

#: The lock file, in the output directory's ``logs/``.
LOCK_NAME = ".bidsqc.lock"


@contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """A path to write ``destination``'s new content to; renamed onto it when the block ends
    without an exception, removed otherwise.

    The temporary name keeps the destination's extensions, so that writers that read them
    (``.tsv``, ``.png``, ``.nii.gz``) write the right format.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{uuid.uuid4().hex[:12]}.{destination.name}")
    try:
        yield temporary
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(destination: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``destination`` through :func:`atomic_path`."""
    with atomic_path(destination) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(destination)


def copy_atomically(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy ``source`` to ``destination`` through :func:`atomic_path`."""
    with atomic_path(destination) as temporary:
        shutil.copyfile(source, temporary)
    return Path(destination)


@contextmanager
def output_lock(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the output directory's lock: one job at a time runs the block.

    A POSIX record lock (``lockf``), which NFS's lock manager honours across nodes; the kernel
    drops it when its holder dies, so a killed job never leaves the directory locked.
    """
    lock = Path(output_dir) / "logs" / LOCK_NAME
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)
