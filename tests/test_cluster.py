"""Running as a cluster does: participant jobs at once into one output directory, and SLURM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bidsqc.outputs.columns import QC_COLUMNS
from bidsqc.outputs.files import LOCK_NAME
from bidsqc.outputs.tables import read_qc_table

pytestmark = pytest.mark.slow

#: Each participant of the array dataset, and the demo participant and run its images are.
ARRAY_PARTICIPANTS = {
    "p1": ("01", "run-1"),
    "p2": ("01", "run-2"),
    "p3": ("01", "run-3"),
    "p4": ("02", ""),
}


def bidsqc(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``bidsqc`` in a process of its own, as a job scheduler starts it."""
    command = [sys.executable, "-m", "bidsqc", *map(str, args)]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(job: subprocess.Popen, timeout: float = 900) -> str:
    """Wait for a job; its output, which a failed assertion shows."""
    output, _ = job.communicate(timeout=timeout)
    return output


def slurm_conf(state: Path, munge_socket: Path) -> str:
    """A one-node cluster on localhost whose state, PID and log files are all in ``state``."""
    host = socket.gethostname().split(".")[0]
    settings = {
        "ClusterName": "bidsqc-test",
        "SlurmctldHost": host,
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "AuthInfo": f"socket={munge_socket}",
        "CredType": "cred/munge",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "SchedulerType": "sched/backfill",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",
        "MpiDefault": "none",
        "ReturnToService": "2",
        "StateSaveLocation": state / "slurmctld",
        "SlurmdSpoolDir": state / "slurmd",
        "SlurmctldPidFile": state / "slurmctld.pid",
        "SlurmdPidFile": state / "slurmd.pid",
        "SlurmctldLogFile": state / "slurmctld.log",
        "SlurmdLogFile": state / "slurmd.log",
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines += [
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """munge, slurmctld and slurmd on localhost, nothing written to /etc; the environment
    that submits to them. The daemons are stopped by their PID files."""
    missing = [
        name for name in ("munged", "mungekey", "slurmctld", "slurmd") if not shutil.which(name)
    ]
    if missing:
        pytest.skip(f"SLURM needs {', '.join(missing)} (Debian: slurm-wlm munge)")
    state = tmp_path_factory.mktemp("slurm")
    key, munge_socket = state / "munge.key", state / "munge.socket"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
    munge = [
        "munged",
        "--force",
        f"--key-file={key}",
        f"--socket={munge_socket}",
        f"--pid-file={state / 'munged.pid'}",
        f"--log-file={state / 'munged.log'}",
        f"--seed-file={state / 'munged.seed'}",
    ]
    conf = state / "slurm.conf"
    conf.write_text(slurm_conf(state, munge_socket))
    env = os.environ | {"SLURM_CONF": str(conf), "LOGNAME": os.environ.get("LOGNAME", "root")}
    daemons = ("munged", "slurmctld", "slurmd")
    try:
        subprocess.run(munge, check=True)
        for daemon in daemons[1:]:
            subprocess.run([daemon, "-f", str(conf)], check=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nodes = subprocess.run(
                ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, env=env
            )
            if nodes.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            logs = [(state / f"{daemon}.log").read_text() for daemon in daemons[1:]]
            pytest.fail(f"the SLURM node never became idle: {nodes.stdout}{nodes.stderr}{logs}")
        yield env
    finally:
        for daemon in reversed(daemons):
            pid_file = state / f"{daemon}.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGTERM)


def renamed(demo_subject: str, label: str, name: str) -> str:
    return name.replace(f"sub-{demo_subject}", f"sub-{label}")


@pytest.fixture(scope="module")
def array_dataset(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four participants whose images are links to demo images (see ARRAY_PARTICIPANTS)."""
    root = tmp_path_factory.mktemp("array") / "bids"
    root.mkdir()
    shutil.copyfile(demo_dir / "dataset_description.json", root / "dataset_description.json")
    for label, (demo_subject, run) in ARRAY_PARTICIPANTS.items():
        anat = root / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        for source in (demo_dir / f"sub-{demo_subject}" / "anat").iterdir():
            if run in source.name:
                (anat / renamed(demo_subject, label, source.name)).symlink_to(source.resolve())
    return root


def assert_same_rows(table: pd.DataFrame, reference: pd.DataFrame, demo_subject: str, label: str):
    """The rows of ``table`` are those of ``reference`` for the same images, to 1e-4."""
    reference = reference.assign(
        filename=reference["filename"].map(lambda name: renamed(demo_subject, label, name))
    )
    reference = reference[reference["filename"].isin(table["filename"])].set_index("filename")
    table = table.set_index("filename")
    assert sorted(table.index) == sorted(reference.index)
    assert (table["status"] == "ok").all(), table["error"].tolist()
    assert table["decision"].tolist() == reference.loc[table.index, "decision"].tolist()
    np.testing.assert_allclose(
        table[list(QC_COLUMNS)].to_numpy(float),
        reference.loc[table.index, list(QC_COLUMNS)].to_numpy(float),
        rtol=1e-4,
        atol=1e-4,
    )


def test_four_participant_jobs_at_once_into_one_output_lose_nothing(
    demo_run, array_dataset, tmp_path
):
    demo_out = demo_run[0]
    out = tmp_path / "out"
    jobs = {
        label: bidsqc(
            array_dataset, out, "participant", "--participant-label", label, "--nprocs", "1"
        )
        for label in ARRAY_PARTICIPANTS
    }
    outputs = {label: finish(job) for label, job in jobs.items()}
    assert {label: job.returncode for label, job in jobs.items()} == dict.fromkeys(jobs, 0), outputs

    for label, (demo_subject, run) in ARRAY_PARTICIPANTS.items():
        table = read_qc_table(out / f"sub-{label}" / f"sub-{label}_qc.tsv")
        reference = read_qc_table(demo_out / f"sub-{demo_subject}" / f"sub-{demo_subject}_qc.tsv")
        assert_same_rows(table, reference, demo_subject, label)
        written = {
            path.relative_to(out / f"sub-{label}").as_posix()
            for path in (out / f"sub-{label}").rglob("*")
        }
        demo_folder = demo_out / f"sub-{demo_subject}"
        expected = {
            renamed(demo_subject, label, path.relative_to(demo_folder).as_posix())
            for path in demo_folder.rglob("*")
            if run in path.name or path.is_dir() or "_qc." in path.name
        }
        assert written == expected
        assert (out / f"sub-{label}.html").is_file()

    leftovers = [
        path
        for path in out.rglob(".*")
        if "work" not in path.relative_to(out).parts and path.name not in {".bidsignore", LOCK_NAME}
    ]
    assert leftovers == []
    methods = (out / "logs" / "CITATION.md").read_text()
    assert (
        "4 T1-weighted images and 1 FLAIR image of 4 participants; 5 of 5 were processed" in methods
    )
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["SourceDatasets"] == [{"URL": array_dataset.absolute().as_uri()}]

    group = bidsqc(array_dataset, out, "group")
    assert group.wait(timeout=300) == 0, finish(group)
    assert len(read_qc_table(out / "group_T1w.tsv")) == 4
    assert len(read_qc_table(out / "group_FLAIR.tsv")) == 1


def test_a_slurm_run_gives_the_tables_of_a_multiproc_run(demo_run, demo_dir, slurm, tmp_path):
    demo_out = demo_run[0]
    out = tmp_path / "out"
    plugin = tmp_path / "slurm.yml"
    plugin.write_text("plugin: SLURM\nplugin_args:\n  sbatch_args: --time=00:30:00\n")
    participant = bidsqc(demo_dir, out, "participant", "--use-plugin", plugin, env=slurm)
    log = finish(participant)
    assert participant.returncode == 0, log
    submitted = list((out / "work").rglob("batch/*.sh"))
    assert submitted, "no job went through sbatch"

    group = bidsqc(demo_dir, out, "group", env=slurm)
    assert group.wait(timeout=300) == 0, finish(group)
    for table in ("group_T1w.tsv", "group_FLAIR.tsv"):
        reference = read_qc_table(demo_out / table)
        assert_same_rows(read_qc_table(out / table), reference, "", "")
