"""What every bidsqc interface shares: its warnings name the node, and so the image."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from bidsqc.interfaces import QCInterface

WARNING_NODE = textwrap.dedent(
    """
    import logging, sys
    from bidsqc.interfaces import QCInterface

    class Warns(QCInterface):
        def _run_interface(self, runtime):
            logging.getLogger("bidsqc.measures.iqms").warning("snr: a tissue mask has < 2 voxels")
            return runtime

    Warns().run(cwd=sys.argv[1])
    logging.getLogger("bidsqc").warning("after the node")
    """
)


def test_a_workers_warning_names_its_node(tmp_path: Path) -> None:
    """A process without logging of its own (a MultiProc worker, a SLURM job) prints the
    node's warnings prefixed with it, and only while the node runs."""
    node_dir = tmp_path / "anat_qc_sub_01_T1w_wf" / "measures"
    node_dir.mkdir(parents=True)
    printed = subprocess.run(
        [sys.executable, "-c", WARNING_NODE, str(node_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stderr.splitlines()
    assert printed[0].endswith(
        "bidsqc.measures.iqms WARNING: [anat_qc_sub_01_T1w_wf.measures] snr: a tissue mask has"
        " < 2 voxels"
    )
    assert printed[1:] == ["after the node"]


def test_a_process_with_logging_keeps_its_records_as_they_are(tmp_path: Path, caplog) -> None:
    class Warns(QCInterface):
        def _run_interface(self, runtime):
            logging.getLogger("bidsqc.measures").warning("cjv: no grey/white contrast")
            return runtime

    handlers = list(logging.getLogger("bidsqc").handlers)
    Warns().run(cwd=str(tmp_path))
    assert [record.getMessage() for record in caplog.records] == ["cjv: no grey/white contrast"]
    assert logging.getLogger("bidsqc").handlers == handlers
