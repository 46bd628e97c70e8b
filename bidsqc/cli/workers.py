"""The processes that run the nodes: nipype's settings for them and MultiProc's forkserver.

The forkserver imports what the nodes need (ANTs, torch and the networks, matplotlib: about
3.4 s) once, and the workers are forked from it. It is started first thing, before this
process imports nipype and pybids, so that its imports pass while this process imports,
indexes the dataset and builds the graph. Nothing here imports nipype before the server has
started: the workers read their settings from ``nipype.cfg`` in the work directory, written
before it starts.
"""

from __future__ import annotations

import multiprocessing
import os
from argparse import Namespace
from pathlib import Path

from bidsqc.outputs.files import write_text_atomically

__all__ = [
    "WORKER_MODULES",
    "prepare_workers",
]

#: What the nodes import when they run (ANTs, torch and the networks, matplotlib): imported once,
#: in the server that MultiProc's workers are forked from.
WORKER_MODULES = (
    "bidsqc.preprocessing",
    "bidsqc.measures.iqms",
    "bidsqc.inference.artefacts",
    "bidsqc.inference.models",
    "bidsqc.inference.motion",
    "bidsqc.inference.registration",
    "bidsqc.reports.figures",
)


def prepare_workers(opts: Namespace) -> dict:
    """nipype's plugin settings; for a run of the graph, also write the workers' nipype settings,
    start MultiProc's forkserver (unless the plugin forks otherwise or not at all), then set the
    same settings in this process's nipype."""
    plugin = _plugin_settings(opts)
    if not (opts.inference_only or opts.reports_only):
        settings = _nipype_settings(opts.verbose)
        _write_nipype_settings(settings, opts.work_dir)
        if _forks_from_server(plugin):
            _start_worker_server()
        _apply_nipype_settings(settings)
    return plugin


def _plugin_settings(opts: Namespace) -> dict:
    """nipype's plugin and its arguments: ``--use-plugin``'s, else MultiProc on ``--nprocs``.

    MultiProc's workers start from a forkserver unless the settings say otherwise: forked from
    a process whose torch has run OpenMP threads, a worker can hang in its first parallel region
    (brain extraction, in every registration).
    """
    settings = opts.plugin_settings or {
        "plugin": "MultiProc",
        "plugin_args": {"n_procs": opts.nprocs, "raise_insufficient": False},
    }
    if settings["plugin"] == "MultiProc":
        settings["plugin_args"].setdefault("mp_context", "forkserver")
    return settings


def _nipype_settings(verbosity: int) -> dict[str, dict[str, str]]:
    """nipype's settings for this process and for every process that runs its nodes.

    nipype logs every failed node with its traceback; bidsqc gives one line per failed image
    instead, naming its crash file in ``logs/``. ``-v`` shows nipype's warnings and errors again,
    ``-vv`` everything. And nipype never asks the network for its latest version, which a
    hospital without internet would wait on.
    """
    level = ("CRITICAL", "WARNING", "DEBUG")[min(verbosity, 2)]
    return {
        "logging": {f"{logger}_level": level for logger in ("workflow", "interface", "utils")},
        "execution": {"check_version": "false"},
    }


def _write_nipype_settings(settings: dict[str, dict[str, str]], work_dir: Path) -> None:
    """Write ``settings`` to ``nipype.cfg`` in the work directory and name it to the processes
    started from now on (``NIPYPE_CONFIG_DIR``): MultiProc's and SLURM's workers are new
    interpreters, which read their settings there."""
    lines = []
    for section, options in settings.items():
        lines.append(f"[{section}]")
        lines += [f"{option} = {value}" for option, value in options.items()]
    write_text_atomically(work_dir / "nipype.cfg", "\n".join(lines) + "\n")
    os.environ["NIPYPE_CONFIG_DIR"] = str(work_dir)
    os.environ["NIPYPE_NO_ET"] = "1"


def _apply_nipype_settings(settings: dict[str, dict[str, str]]) -> None:
    """Set ``settings`` in this process's nipype, and its loggers' levels with them."""
    from nipype import config
    from nipype import logging as nipype_logging

    for section, options in settings.items():
        for option, value in options.items():
            config.set(section, option, value)
    nipype_logging.update_logging(config)


def _forks_from_server(plugin: dict) -> bool:
    return plugin["plugin"] == "MultiProc" and plugin["plugin_args"]["mp_context"] == "forkserver"


def _start_worker_server() -> None:
    """Start the forkserver now, importing :data:`WORKER_MODULES`, so that those seconds of
    imports are paid once rather than by every worker. Importing torch starts no OpenMP
    thread, so forking after it is safe."""
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_MODULES))
    forkserver.ensure_running()
