"""Tests of the command line (bidsqc.cli.parser)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bidsqc import __version__
from bidsqc.cli.parser import build_parser, parse_args


@pytest.fixture
def bids_dir(make_bids) -> Path:
    return make_bids(["sub-01/anat/sub-01_T1w.nii.gz"])


@pytest.fixture
def output_dir(tmp_path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def args(bids_dir, output_dir) -> list[str]:
    """The positional arguments of a participant-level run."""
    return [str(bids_dir), str(output_dir), "participant"]


def usage_error(capsys, argv: list[str]) -> str:
    """Return the message of the usage error that ``argv`` must raise."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_defaults(args, bids_dir, output_dir):
    opts = parse_args(args)
    assert opts.bids_dir == bids_dir
    assert opts.output_dir == output_dir
    assert opts.analysis_level == "participant"
    assert opts.work_dir == output_dir / "work"
    assert opts.participant_label is None
    assert opts.session_label is None
    assert opts.modalities == ["T1w", "FLAIR"]
    assert opts.bids_filters is None
    assert opts.plugin_settings is None
    assert opts.nprocs >= 1
    assert opts.omp_nthreads == min(max(opts.nprocs - 1, 1), 8)
    assert not opts.skip_bids_validation
    assert not opts.reports_only
    assert opts.verbose == 0


def test_relative_paths_become_absolute(bids_dir, monkeypatch):
    monkeypatch.chdir(bids_dir.parent)
    opts = parse_args([bids_dir.name, "out", "participant", "-w", "scratch"])
    assert opts.bids_dir == bids_dir
    assert opts.output_dir == bids_dir.parent / "out"
    assert opts.work_dir == bids_dir.parent / "scratch"


@pytest.mark.parametrize("flag", ["--participant-label", "--participant_label"])
def test_participant_label(args, flag):
    opts = parse_args([*args, flag, "sub-01", "02", "sub-01"])
    assert opts.participant_label == ["01", "02"]


@pytest.mark.parametrize("flag", ["--session-label", "--session_label"])
def test_session_label(args, flag):
    assert parse_args([*args, flag, "ses-pre", "post"]).session_label == ["pre", "post"]


@pytest.mark.parametrize(
    ("flag", "label"),
    [
        ("--participant-label", "sub-01_T1w"),
        ("--session-label", "ses-"),
        ("--session-label", "a/b"),
    ],
)
def test_invalid_label(capsys, args, flag, label):
    assert f"'{label}' is not a BIDS label" in usage_error(capsys, [*args, flag, label])


def test_modalities(capsys, args):
    assert parse_args([*args, "--modalities", "FLAIR"]).modalities == ["FLAIR"]
    assert "invalid choice: 'T2w'" in usage_error(capsys, [*args, "--modalities", "T2w"])


def test_bids_filter_file(capsys, args, tmp_path):
    path = tmp_path / "filters.json"
    path.write_text(json.dumps({"T1w": {"acquisition": "mprage"}}))
    opts = parse_args([*args, "--bids-filter-file", str(path)])
    assert opts.bids_filters == {"T1w": {"acquisition": "mprage"}}

    path.write_text('{"T1w": {"acquisition": "mprage"')
    message = usage_error(capsys, [*args, "--bids-filter-file", str(path)])
    assert f"argument --bids-filter-file: Cannot read BIDS filters from '{path}'" in message
    path.write_text(json.dumps({"T1w": {"subject": "02"}}))
    assert "may not set subject" in usage_error(capsys, [*args, "--bids-filter-file", str(path)])


@pytest.mark.parametrize("flag", ["-w", "--work-dir"])
def test_work_dir(args, flag, tmp_path):
    assert parse_args([*args, flag, str(tmp_path / "work")]).work_dir == tmp_path / "work"


@pytest.mark.parametrize("flag", ["--nprocs", "--nthreads", "--n_cpus"])
def test_nprocs(args, flag):
    opts = parse_args([*args, flag, "3"])
    assert (opts.nprocs, opts.omp_nthreads) == (3, 2)
    opts = parse_args([*args, flag, "1"])
    assert (opts.nprocs, opts.omp_nthreads) == (1, 1)
    opts = parse_args([*args, flag, "32"])
    assert (opts.nprocs, opts.omp_nthreads) == (32, 8)


def test_omp_nthreads(capsys, args):
    opts = parse_args([*args, "--nprocs", "4", "--omp-nthreads", "2"])
    assert (opts.nprocs, opts.omp_nthreads) == (4, 2)
    message = usage_error(capsys, [*args, "--nprocs", "2", "--omp-nthreads", "4"])
    assert "--omp-nthreads (4) cannot exceed --nprocs (2)" in message


def test_device(capsys, args, monkeypatch):
    assert parse_args(args).device == "auto"
    assert parse_args([*args, "--device", "cpu"]).device == "cpu"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert "CUDA sees no GPU" in usage_error(capsys, [*args, "--device", "cuda"])
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert parse_args([*args, "--device", "cuda"]).device == "cuda"
    assert "invalid choice" in usage_error(capsys, [*args, "--device", "tpu"])


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_invalid_cpu_count(capsys, args, value):
    for flag in ("--nprocs", "--omp-nthreads"):
        assert f"'{value}' is not an integer of 1 or more" in usage_error(
            capsys, [*args, flag, value]
        )


def test_use_plugin(args, tmp_path):
    path = tmp_path / "plugin.yml"
    path.write_text("plugin: SLURM\nplugin_args:\n  sbatch_args: --mem=8G\n  max_jobs: 50\n")
    assert parse_args([*args, "--use-plugin", str(path)]).plugin_settings == {
        "plugin": "SLURM",
        "plugin_args": {"sbatch_args": "--mem=8G", "max_jobs": 50},
    }
    path.write_text("plugin: Linear\n")
    assert parse_args([*args, "--use-plugin", str(path)]).plugin_settings == {
        "plugin": "Linear",
        "plugin_args": {},
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("plugin: [SLURM\n", "Cannot read nipype plugin settings from '{path}'"),
        ("plugin_args: {n_procs: 2}\n", "'{path}' must name a nipype plugin"),
        ("- SLURM\n", "'{path}' must name a nipype plugin"),
        ("plugin: SLURM\nplugin_args: [1]\n", "'plugin_args' in '{path}' must be a mapping"),
        ("plugin: SLURM\nplugins_args: {}\n", "'{path}' may only set 'plugin' and 'plugin_args'"),
    ],
)
def test_invalid_plugin_file(capsys, args, tmp_path, content, message):
    path = tmp_path / "plugin.yml"
    path.write_text(content)
    error = usage_error(capsys, [*args, "--use-plugin", str(path)])
    assert f"argument --use-plugin: {message.format(path=path)}" in error


def test_missing_plugin_file(capsys, args, tmp_path):
    error = usage_error(capsys, [*args, "--use-plugin", str(tmp_path / "nope.yml")])
    assert f"Cannot read nipype plugin settings from '{tmp_path / 'nope.yml'}'" in error


def test_no_abbreviations(capsys, args):
    assert "unrecognized arguments: --nproc" in usage_error(capsys, [*args, "--nproc", "2"])


def test_flags(args):
    opts = parse_args([*args, "--skip-bids-validation", "--reports-only", "-vv"])
    assert opts.skip_bids_validation and opts.reports_only
    assert opts.verbose == 2
    assert parse_args([*args, "--verbose", "-v"]).verbose == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"bidsqc {__version__}\n"


def test_help_documents_exit_codes():
    text = build_parser().format_help()
    for line in ("0  all images were processed", "1  some images failed", "2  usage or dataset"):
        assert line in text


def test_analysis_level_required(capsys, bids_dir, output_dir):
    assert "invalid choice: 'all'" in usage_error(capsys, [str(bids_dir), str(output_dir), "all"])


def test_missing_bids_dir(capsys, tmp_path, output_dir):
    missing = tmp_path / "nowhere"
    message = usage_error(capsys, [str(missing), str(output_dir), "participant"])
    assert f"BIDS dataset '{missing}' is not an existing directory" in message
    (tmp_path / "file").write_text("")
    assert "is not an existing directory" in usage_error(
        capsys, [str(tmp_path / "file"), str(output_dir), "participant"]
    )


def test_group_level_needs_outputs_not_raw_data(capsys, tmp_path, output_dir):
    missing = tmp_path / "nowhere"
    message = usage_error(capsys, [str(missing), str(output_dir), "group"])
    assert f"Output directory '{output_dir}' is not an existing directory" in message

    output_dir.mkdir()
    assert parse_args([str(missing), str(output_dir), "group"]).bids_dir == missing


@pytest.mark.parametrize("where", [".", "derivatives/bidsqc", "sub-01/.."])
def test_output_inside_bids_dir(capsys, bids_dir, where):
    output_dir = Path(bids_dir, where)
    message = usage_error(capsys, [str(bids_dir), os.path.join(bids_dir, where), "participant"])
    assert f"Output directory '{output_dir}' is inside the BIDS dataset '{bids_dir}'" in message


def test_output_inside_bids_dir_through_links(capsys, bids_dir, tmp_path):
    (tmp_path / "link").symlink_to(bids_dir)
    output_dir = tmp_path / "link" / "derivatives"
    message = usage_error(capsys, [str(bids_dir), str(output_dir), "participant"])
    assert "is inside the BIDS dataset" in message
    message = usage_error(capsys, [str(tmp_path / "link"), str(bids_dir / "out"), "participant"])
    assert "is inside the BIDS dataset" in message


def test_work_dir_inside_bids_dir(capsys, args, bids_dir):
    message = usage_error(capsys, [*args, "-w", str(bids_dir / "work")])
    assert f"Work directory '{bids_dir / 'work'}' is inside the BIDS dataset" in message


def test_output_dir_is_a_file(capsys, bids_dir, output_dir):
    output_dir.write_text("")
    message = usage_error(capsys, [str(bids_dir), str(output_dir), "participant"])
    assert f"Output directory '{output_dir}' is not a directory" in message


def test_sibling_with_common_prefix_is_allowed(bids_dir):
    output_dir = bids_dir.with_name(bids_dir.name + "-derivatives")
    assert parse_args([str(bids_dir), str(output_dir), "participant"]).output_dir == output_dir


def test_derivatives(capsys, args, tmp_path):
    assert parse_args(args).derivatives == []
    first, second = tmp_path / "a" / "fmriprep", tmp_path / "b" / "smriprep"
    for folder in (first, second):
        folder.mkdir(parents=True)
    opts = parse_args([*args, "--derivatives", str(first), "--derivatives", str(second)])
    assert opts.derivatives == [first, second]
    missing = tmp_path / "missing"
    assert "is not an existing directory" in usage_error(
        capsys, [*args, "--derivatives", str(missing)]
    )
    twin = tmp_path / "c" / "fmriprep"
    twin.mkdir(parents=True)
    message = usage_error(capsys, [*args, "--derivatives", str(first), "--derivatives", str(twin)])
    assert "distinct names" in message


def test_thresholds(capsys, args, tmp_path):
    from bidsqc.decisions import DEFAULT_THRESHOLDS, Threshold

    assert parse_args(args).thresholds == DEFAULT_THRESHOLDS
    path = tmp_path / "thresholds.json"
    path.write_text('{"cjv": {"review": 0.6}}')
    assert parse_args([*args, "--thresholds", str(path)]).thresholds == {"cjv": Threshold(0.6)}
    path.write_text('{"cjv": {"warn": 0.6}}')
    assert "'review' and/or 'fail'" in usage_error(capsys, [*args, "--thresholds", str(path)])
