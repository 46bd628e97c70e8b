"""Images per second through the bundled networks in batches, as ``--device cuda`` runs them.

    python benchmarks/network_throughput.py --device cuda --images 512      # on a GPU
    python benchmarks/network_throughput.py --device cpu --images 16
    python benchmarks/network_throughput.py --device cuda --bids BIDS --output-dir OUT

Without ``--output-dir``, the inputs are made in memory from the bundled template with noise
(what an image shows does not change what a network costs), so the figure is the networks'
own: the motion and registration-QC networks on the 2 mm head box, the artefact network on
the tiles of the 1 mm head box (cut beforehand, as the batched pass's reader threads do). With
``--output-dir`` (a finished participant run of ``--bids``), it times the whole batched pass of
:mod:`bidsqc.inference.batched` on a copy of it, reading and resampling the images included,
with ``--readers`` threads.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bidsqc.data import head_box, load_template, network_weights
from bidsqc.inference.artefacts import TiledVolume, predict_artefacts_of_volumes
from bidsqc.inference.inputs import normalise_intensity
from bidsqc.inference.models import load_network
from bidsqc.inference.motion import predict_motion
from bidsqc.inference.registration import predict_registration


def synthetic_volumes(resolution: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` noisy copies of the template T1w on the head box at ``resolution`` mm (1 or 2),
    scaled as the networks take them."""
    template = torch.tensor(load_template(2).t1w)[None, None]
    shape = head_box(resolution)[0]
    template = F.interpolate(template, size=shape, mode="trilinear")[0, 0].numpy()
    rng = np.random.default_rng(seed)
    noise = 0.03 * template.max()
    return [
        normalise_intensity(template + rng.normal(0, noise, template.shape).astype(np.float32))
        for _ in range(count)
    ]


def images_per_second(run: Callable[[], list], count: int, device: torch.device) -> float:
    """``count`` divided by the seconds ``run`` takes (after one run to warm up)."""
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def time_networks(device: str, count: int, batch_size: int) -> None:
    coarse = synthetic_volumes(2, count)
    # Cut into tiles beforehand, as the batched pass's reader threads do.
    tiled = [TiledVolume.of(volume) for volume in synthetic_volumes(1, count)]
    template = coarse[0]
    networks = {name: load_network(network_weights(name), device) for name in ("motion",
                "registration", "artefact")}  # fmt: skip
    where = next(networks["motion"].parameters()).device
    runs = {
        "motion": lambda: predict_motion(networks["motion"], coarse, batch_size=batch_size),
        "registration": lambda: predict_registration(
            networks["registration"], [(v, template) for v in coarse], batch_size=batch_size
        ),
        "artefact": lambda: list(
            predict_artefacts_of_volumes(
                networks["artefact"],
                [TiledVolume(t.origins, t.weights, t.tiles) for t in tiled],  # fresh answers
                batch_size=4 * batch_size,
            )
        ),
    }
    rates = {name: images_per_second(run, count, where) for name, run in runs.items()}
    for name, rate in rates.items():
        print(f"{name:13} {rate:8.1f} images/s")
    print(f"{'all three':13} {1 / sum(1 / rate for rate in rates.values()):8.1f} images/s")


def time_batched_pass(device: str, bids: Path, output_dir: Path, readers: int) -> None:
    from bidsqc.discovery import collect_data, collect_participants, init_layout
    from bidsqc.inference.batched import run_networks

    layout = init_layout(bids, validate=False)
    images = collect_data(layout, collect_participants(layout, None))
    weights = {name: network_weights(name) for name in ("motion", "registration", "artefact")}
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "out"
        shutil.copytree(output_dir, copy, ignore=shutil.ignore_patterns("work"))
        start = time.perf_counter()
        run_networks(copy, images, weights, device=device, readers=readers)
        seconds = time.perf_counter() - start
    print(f"batched pass: {len(images)} images in {seconds:.1f} s, "
          f"{len(images) / seconds:.1f} images/s, reading included")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--bids", type=Path)
    parser.add_argument("--output-dir", type=Path, help="a participant run of --bids")
    parser.add_argument("--readers", type=int, default=8)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"{args.threads} threads"
    print(f"device: {args.device} ({name}), torch {torch.__version__}")
    if args.output_dir:
        time_batched_pass(args.device, args.bids, args.output_dir, args.readers)
    else:
        print(f"{args.images} images, batches of {args.batch_size}")
        time_networks(args.device, args.images, args.batch_size)


if __name__ == "__main__":
    main()
