"""Writes into a shared output directory: atomic replacement, and the lock."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from bidsqc.outputs.files import atomic_path, output_lock, write_text_atomically


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "sub-01" / "sub-01_qc.tsv"
    write_text_atomically(target, "old\n")
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent
        assert temporary.name.endswith(".sub-01_qc.tsv")  # writers that read the extension
        temporary.write_text("new\n")
        assert target.read_text() == "old\n"  # readers see the old file until the rename
    assert target.read_text() == "new\n"
    assert [path.name for path in target.parent.iterdir()] == ["sub-01_qc.tsv"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = write_text_atomically(tmp_path / "dataset_description.json", "{}\n")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text('{"Na')
        raise RuntimeError("killed")
    assert target.read_text() == "{}\n"
    assert [path.name for path in tmp_path.iterdir()] == ["dataset_description.json"]


def test_two_writers_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "CITATION.md"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("one\n")
        second.write_text("two\n")
    assert target.read_text() == "one\n"  # the last rename wins; neither is torn


def _count_under_lock(output_dir: Path, times: int) -> None:
    counter = output_dir / "counter.txt"
    for _ in range(times):
        with output_lock(output_dir):
            value = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(value + 1))


def test_the_lock_lets_one_process_at_a_time_read_then_write(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_count_under_lock, args=(tmp_path, 50)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * 4
    assert (tmp_path / "counter.txt").read_text() == "200"
