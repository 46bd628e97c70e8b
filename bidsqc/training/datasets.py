"""Training data on disk, as PyTorch datasets: motion samples and artefact tiles."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from bidsqc.data import head_box_brain_mask
from bidsqc.inference.inputs import normalise_intensity
from bidsqc.inference.tiles import MIN_BRAIN_FRACTION, TILE_SIZE, overview, tiles_in_context
from bidsqc.networks import ARTEFACT_NAMES, RMS_BINS, SoftBins
from bidsqc.training.simulation import ARTEFACTS, LABELS_TABLE, quality_score

__all__ = [
    "ARTEFACT_SAMPLE_COLUMNS",
    "ArtefactTileDataset",
    "MotionSampleDataset",
    "SAMPLE_COLUMNS",
    "augment_volume",
    "random_bias_field",
    "random_crop",
    "read_sample_table",
]


#: Columns of the labels table that the motion dataset needs.
SAMPLE_COLUMNS = ("filename", "base_image", "motion_rms_mm", "motion_grade")


def augment_volume(volume: Tensor, intensity_channels: int | None = None) -> Tensor:
    """Label-preserving augmentation of one volume, shape (C, X, Y, Z), drawn from torch's RNG.

    Left-right flip (axis X, the template is symmetric about x = 0) with probability 1/2, a gamma
    in [0.8, 1.25] (log-uniform) and a global scale in [0.9, 1.1]. Neither changes how much
    the head moved; expects non-negative intensities, as :func:`normalise_intensity` gives.
    Every channel is flipped; gamma and scale change only the first ``intensity_channels``
    (all by default), so that channels holding a mask stay masks.
    """
    if torch.rand(()) < 0.5:
        volume = volume.flip(1)
    gamma = torch.exp(torch.empty(()).uniform_(np.log(0.8), np.log(1.25)))
    scale = torch.empty(()).uniform_(0.9, 1.1)
    intensities = volume[:intensity_channels]
    return torch.cat([scale * intensities**gamma, volume[len(intensities) :]])


def random_bias_field(shape: Sequence[int], max_log_gain: float = 0.3) -> Tensor:
    """A smooth multiplicative field of ``shape`` voxels, drawn from torch's RNG: the
    exponential of a 4 × 4 × 4 grid of log-gains, each uniform in ±``max_log_gain``,
    interpolated trilinearly over the volume, like the slow receive-coil sensitivity of a scan
    that was not bias-corrected (at most a 1.8-fold range by default)."""
    coarse = torch.empty(1, 1, 4, 4, 4).uniform_(-max_log_gain, max_log_gain)
    log_gain = F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)
    return log_gain[0, 0].exp()


def random_crop(volume: Tensor, shape: Sequence[int]) -> Tensor:
    """A box of ``shape`` voxels at a uniformly random place in ``volume`` (C, X, Y, Z), drawn
    from torch's RNG. Training on crops costs less per sample than on the whole head box, and
    the encoder's global pooling takes whole volumes at inference."""
    size = volume.shape[1:]
    if len(shape) != 3 or any(not 0 < c <= n for c, n in zip(shape, size, strict=True)):
        raise ValueError(f"crop {tuple(shape)} does not fit in a volume of {tuple(size)}")
    box = tuple(
        slice(start, start + c)
        for c, n in zip(shape, size, strict=True)
        for start in [int(torch.randint(0, n - c + 1, ()))]
    )
    return volume[(slice(None), *box)]


class MotionSampleDataset(Dataset):
    """Pre-generated motion samples listed in ``labels.tsv`` (format in the module docstring).

    Each item is ``(volume, target)``: the normalised volume, shape (1, X, Y, Z), float32, and
    ``{"grade": int64, "rms_mm": float32}``. Use :func:`subject_level_split` on :attr:`sources`
    and :class:`torch.utils.data.Subset` to split it.

    Parameters
    ----------
    root : path-like
        Folder that holds ``labels.tsv``.
    augment : bool
        Apply :func:`augment_volume` to each volume (for training only).
    crop : (int, int, int), optional
        Return a :func:`random_crop` of this shape of each volume (for training only).
    bins : SoftBins
        The bins the targets must fit in; an RMS outside them is an error here, not mid-training.
    bias_field : bool
        With ``augment``, first multiply each volume by a :func:`random_bias_field`; neither
        changes how much the head moved.

    Attributes
    ----------
    files : list of pathlib.Path
    sources : list of str
    rms_mm : numpy.ndarray of float
    grades : numpy.ndarray of int
    """

    def __init__(
        self,
        root: str | os.PathLike,
        augment: bool = False,
        bins: SoftBins = RMS_BINS,
        crop: Sequence[int] | None = None,
        bias_field: bool = False,
    ) -> None:
        self.root = Path(root)
        table = self.root / LABELS_TABLE
        rows = read_sample_table(table, SAMPLE_COLUMNS)
        self.files = [self.root / row["filename"] for row in rows]
        self.sources = [row["base_image"] for row in rows]
        self.rms_mm = np.array([float(row["motion_rms_mm"]) for row in rows])
        self.grades = np.array([int(row["motion_grade"]) for row in rows])
        bad = np.flatnonzero(~((self.rms_mm >= 0) & (self.rms_mm <= bins.max_mm)))
        if bad.size:
            raise ValueError(
                f"{table}: motion_rms_mm outside [0, {bins.max_mm}] mm in row(s) "
                f"{(bad + 1).tolist()}"
            )
        bad = np.flatnonzero(~np.isin(self.grades, (0, 1, 2)))
        if bad.size:
            raise ValueError(f"{table}: motion_grade not 0, 1 or 2 in row(s) {(bad + 1).tolist()}")
        self.augment = augment
        self.bias_field = bias_field
        self.crop = crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        volume = torch.from_numpy(normalise_intensity(np.load(self.files[index])))[None]
        if self.crop is not None:
            volume = random_crop(volume, self.crop)
        if self.augment:
            if self.bias_field:
                volume = volume * random_bias_field(volume.shape[1:])
            volume = augment_volume(volume)
        target = {
            "grade": torch.tensor(self.grades[index], dtype=torch.int64),
            "rms_mm": torch.tensor(self.rms_mm[index], dtype=torch.float32),
        }
        return volume, target


def read_sample_table(table: str | os.PathLike, columns: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a tab-separated table of generated samples, checked to have ``columns`` and
    at least one row; ``FileNotFoundError`` without the table."""
    table = Path(table)
    if not table.is_file():
        raise FileNotFoundError(f"no {table.name} in {table.parent}")
    with table.open(newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t")
        missing = sorted(set(columns) - set(reader.fieldnames or ()))
        if missing:
            raise ValueError(f"{table} lacks the column(s) {', '.join(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{table} lists no sample")
    return rows


#: Columns of the labels table that the artefact dataset needs.
ARTEFACT_SAMPLE_COLUMNS = ("filename", "base_image", *(f"severity_{name}" for name in ARTEFACTS))


class ArtefactTileDataset(Dataset):
    """Random 64^3 tiles of pre-generated artefact samples, labelled with their volume's artefacts.

    The samples are those of :func:`bidsqc.training.samples.generate_artefact_samples`: float16
    volumes on the 1 mm head box (:func:`bidsqc.data.head_box`), listed in ``labels.tsv`` with
    ``severity_<artefact>`` columns. Item ``i`` is a tile of sample ``samples[i //
    tiles_per_volume]``, in context (:func:`bidsqc.inference.tiles.tiles_in_context`, shape (3, 64,
    64, 64)), whose brain fraction, inside the template brain mask and the scan's field of view
    (non-zero voxels), is at least :data:`bidsqc.inference.tiles.MIN_BRAIN_FRACTION`, as the tiles
    that the image's answer averages are. Its target is ``{"presence": float32 (6,)`` (1 for each of
    :data:`bidsqc.networks.ARTEFACT_NAMES` applied), ``"quality": float32}``
    (:func:`bidsqc.training.simulation.quality_score` of all severities, motion included).

    Parameters
    ----------
    root : path-like
        Folder that holds ``labels.tsv``.
    samples : sequence of int, optional
        Rows of the table to use (e.g. one side of :func:`subject_level_split`); all by default.
    tiles_per_volume : int
        Tiles drawn from each sample per pass.
    augment : bool
        Apply :func:`augment_volume` to each tile (for training only).
    seed : int, optional
        Fix the tile of every item (for validation). Without it, tiles are drawn anew from
        torch's generator, which :func:`fit` seeds.

    Attributes
    ----------
    sources : list of str
        Base image of each row of the table.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        samples: Sequence[int] | None = None,
        tiles_per_volume: int = 4,
        augment: bool = False,
        seed: int | None = None,
    ) -> None:
        self.root = Path(root)
        rows = read_sample_table(self.root / LABELS_TABLE, ARTEFACT_SAMPLE_COLUMNS)
        self.sources = [row["base_image"] for row in rows]
        self.samples = list(range(len(rows))) if samples is None else list(samples)
        self.files = [self.root / row["filename"] for row in rows]
        severities = [{name: float(row[f"severity_{name}"]) for name in ARTEFACTS} for row in rows]
        self.presence = np.array(
            [[severity[name] > 0 for name in ARTEFACT_NAMES] for severity in severities],
            dtype=np.float32,
        )
        self.quality = np.array([quality_score(severity) for severity in severities], np.float32)
        if tiles_per_volume < 1:
            raise ValueError(f"tiles_per_volume must be at least 1, got {tiles_per_volume}")
        self.tiles_per_volume = tiles_per_volume
        self.augment = augment
        self.seed = seed
        self._overviews: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples) * self.tiles_per_volume

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        sample = self.samples[index // self.tiles_per_volume]
        seed = torch.randint(2**62, ()).item() if self.seed is None else (self.seed, index)
        rng = np.random.default_rng(seed)
        volume = np.load(self.files[sample], mmap_mode="r")
        origin = _random_brain_tile(volume, head_box_brain_mask(1), rng)
        if sample not in self._overviews:
            self._overviews[sample] = overview(volume)
        tile = torch.from_numpy(tiles_in_context(volume, [origin], self._overviews[sample])[0])
        if self.augment:
            tile = augment_volume(tile, intensity_channels=2)
        target = {
            "presence": torch.from_numpy(self.presence[sample]),
            "quality": torch.tensor(self.quality[sample]),
        }
        return tile, target


def _random_brain_tile(
    volume: np.ndarray, brain: np.ndarray, rng: np.random.Generator, attempts: int = 50
) -> tuple[int, int, int]:
    """The origin of a tile, uniformly random, holding enough brain; the best of ``attempts``
    origins when none does (a scan with a small field of view)."""
    best, best_fraction = (0, 0, 0), -1.0
    for _ in range(attempts):
        x, y, z = (int(rng.integers(0, n - TILE_SIZE + 1)) for n in volume.shape)
        window = np.s_[x : x + TILE_SIZE, y : y + TILE_SIZE, z : z + TILE_SIZE]
        fraction = float(np.mean(brain[window] & (np.asarray(volume[window]) > 0)))
        if fraction >= MIN_BRAIN_FRACTION:
            return x, y, z
        if fraction > best_fraction:
            best, best_fraction = (x, y, z), fraction
    return best
