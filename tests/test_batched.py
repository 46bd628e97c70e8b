"""The batched pass over many images (``--device cuda``, ``--inference-only``) writes what the
graph's network nodes write, with the same numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bidsqc.data import network_weights
from bidsqc.discovery import AnatImage, collect_data, collect_participants, init_layout
from bidsqc.inference.batched import BATCHED_NETWORKS, run_networks
from bidsqc.outputs.paths import (
    artefact_map_path,
    artefacts_path,
    figure_path,
    motion_path,
    registration_path,
)
from bidsqc.outputs.sidecars import sidecar_path

pytestmark = pytest.mark.slow

#: The nodes ran each image alone, the pass in batches: the same network, other batch sizes.
TOLERANCE = 1e-4


def columns(path: Path) -> dict[str, float]:
    """The numbers of a network's JSON, tile by tile for the artefacts."""
    record = json.loads(path.read_text())
    flat = {key: value for key, value in record.items() if isinstance(value, float)}
    for index, tile in enumerate(record.get("tiles", [])):
        flat |= {
            f"tile{index}_{key}": value for key, value in tile.items() if key != "origin_voxel"
        }
    return flat


def network_outputs(out: Path, image: AnatImage) -> list[Path]:
    """What the network nodes (or the batched pass) write for an image."""
    return [
        motion_path(out, image),
        registration_path(out, image),
        artefacts_path(out, image),
        artefact_map_path(out, image),
        sidecar_path(artefact_map_path(out, image)),
        figure_path(out, image, "motion"),
        figure_path(out, image, "artefacts"),
    ]


@pytest.fixture(scope="module")
def batched_out(demo_dir, demo_run, tmp_path_factory) -> tuple[Path, Path, list[AnatImage]]:
    """The demo's output, copied without the network outputs, which the batched pass then
    writes again."""
    nodes_out = demo_run[0]
    out = tmp_path_factory.mktemp("batched") / "out"
    shutil.copytree(nodes_out, out, ignore=shutil.ignore_patterns("work"))
    layout = init_layout(demo_dir, validate=False)
    images = collect_data(layout, collect_participants(layout, None))
    for image in images:
        for path in network_outputs(out, image):
            path.unlink()
    weights = {name: network_weights(name) for name in BATCHED_NETWORKS if name != "quality"}
    run_networks(out, images, weights, device="cpu", batch_size=3, readers=2)
    return nodes_out, out, images


def test_the_pass_writes_every_network_output(batched_out) -> None:
    _, out, images = batched_out
    for image in images:
        for path in network_outputs(out, image):
            assert path.is_file(), path


def test_the_pass_gives_the_nodes_numbers(batched_out) -> None:
    nodes_out, out, images = batched_out
    assert len(images) == 5  # 3 T1w of sub-01, a T1w and a FLAIR of sub-02
    for image in images:
        for path_of in (motion_path, registration_path, artefacts_path):
            ours, theirs = columns(path_of(out, image)), columns(path_of(nodes_out, image))
            assert ours.keys() == theirs.keys() and len(ours) >= 2
            for key, value in theirs.items():
                assert ours[key] == pytest.approx(value, abs=TOLERANCE), (image.relpath, key)
