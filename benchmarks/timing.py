"""Wall time and peak memory of a command and every process it starts.

The peak memory of a pipeline is that of its largest process: nipype's workers (forked from a
server, not waited for by the command itself) are not seen by ``getrusage``, so the process
tree is read from ``/proc`` while the command runs, and each process's own high-water mark
(``VmHWM``) is kept.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Timed", "run_timed"]

#: Seconds between two readings of the process tree.
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Timed:
    seconds: float
    #: The largest peak resident memory of any one process of the tree, in MB.
    peak_process_mb: float
    returncode: int


def run_timed(
    command: Sequence[str], env: Mapping[str, str] | None = None, log: Path | None = None
) -> Timed:
    """Run ``command`` (its output to ``log``, else discarded) and measure it."""
    peaks: dict[int, int] = {}
    output = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    watcher = threading.Thread(target=_watch, args=(process, peaks), daemon=True)
    watcher.start()
    returncode = process.wait()
    seconds = time.perf_counter() - start
    watcher.join()
    if log:
        output.close()
    return Timed(seconds, max(peaks.values(), default=0) / 1024, returncode)


def _watch(process: subprocess.Popen, peaks: dict[int, int]) -> None:
    while process.poll() is None:
        for pid in _descendants(process.pid):
            peaks[pid] = max(peaks.get(pid, 0), _high_water_kb(pid))
        time.sleep(POLL_SECONDS)


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _high_water_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
