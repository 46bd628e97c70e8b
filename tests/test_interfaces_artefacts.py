"""Tests of the nipype interfaces of the artefact network: ResampleThroughTransform, which
makes its input, ArtefactQC, and PlotMosaic drawing its tile map."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import ants
import nibabel as nb
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from PIL import Image

from bidsqc.data import head_box, head_box_brain_mask
from bidsqc.decisions import DEFAULT_THRESHOLDS
from bidsqc.inference.tiles import TILE_SIZE
from bidsqc.interfaces.networks import ArtefactQC
from bidsqc.interfaces.preprocessing import ResampleThroughTransform
from bidsqc.interfaces.reports import PlotMosaic
from bidsqc.networks import ArtefactNet
from bidsqc.outputs.columns import ARTEFACT_COLUMNS, ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.reports.figures import OUTLINE_COLOR, flagged_tiles
from bidsqc.training.cards import save_model
from bidsqc.training.simulation import LABELS_TABLE

#: A small artefact network, cheap enough to run on every tile of a head box in a test.
SMALL = {"channels": [4, 8, 8, 16, 16], "hidden_features": [16], "dropout": 0.0}


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """The interfaces set torch's thread count: give it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised small ArtefactNet, saved with a minimal model card."""
    folder = tmp_path_factory.mktemp("weights")
    table = folder / LABELS_TABLE
    table.write_text("filename\n")
    card = {
        "training_files": [table],
        "hyperparameters": {"network": SMALL},
        "validation_metrics": {},
        "seed": 0,
    }
    torch.manual_seed(0)
    path = folder / "artefact.pt"
    save_model(ArtefactNet(**SMALL).eval(), path, card)
    return path


@pytest.fixture(scope="module")
def image_1mm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A noisy brain on the 1 mm head box, zero outside the template brain mask: registered
    already, by the identity."""
    shape, affine = head_box(1)
    brain = head_box_brain_mask(1)
    noise = np.random.default_rng(0).normal(0, 10, shape).astype(np.float32)
    data = np.where(brain, 100 + noise, 0).astype(np.float32)
    path = tmp_path_factory.mktemp("image") / "sub-01_res-1_T1w.nii"
    nb.save(nb.Nifti1Image(data, affine), path)
    return path


@pytest.fixture(scope="module")
def identity_transform(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ITK affine that leaves every point where it is, as ANTs writes one."""
    path = tmp_path_factory.mktemp("transform") / "identity.mat"
    ants.write_transform(ants.create_ants_transform(dimension=3), str(path))
    return path


@pytest.fixture(scope="module")
def resampled_1mm(
    tmp_path_factory: pytest.TempPathFactory, image_1mm: Path, identity_transform: Path
) -> Path:
    """ResampleThroughTransform of the image, as the workflow makes the network's input."""
    cwd = tmp_path_factory.mktemp("resample_fine")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(cwd)
        result = ResampleThroughTransform(
            in_file=str(image_1mm), transform=str(identity_transform)
        ).run()
    return Path(result.outputs.out_file)


def test_resample_through_the_identity_keeps_an_image_on_the_head_box(
    resampled_1mm: Path, image_1mm: Path
) -> None:
    resampled, original = nb.load(resampled_1mm), nb.load(image_1mm)
    assert resampled_1mm.name == "headbox_res-1.nii"  # uncompressed: only nodes read it
    assert resampled.shape == head_box(1)[0]
    assert np.allclose(resampled.affine, original.affine)
    assert resampled.get_data_dtype() == np.float32
    assert np.allclose(resampled.get_fdata(), original.get_fdata(), atol=0.01)  # of ~100


@pytest.fixture(scope="module")
def artefact_qc(
    tmp_path_factory: pytest.TempPathFactory, weights: Path, resampled_1mm: Path
) -> dict[str, Path]:
    """ArtefactQC run in a folder of its own; its output files."""
    cwd = tmp_path_factory.mktemp("artefact_qc")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(cwd)
        threads = torch.get_num_threads()
        try:
            result = ArtefactQC(
                in_file=str(resampled_1mm),
                weights=str(weights),
                device="cpu",
            ).run()
        finally:
            torch.set_num_threads(threads)
    outputs = {"out_file": Path(result.outputs.out_file), "out_map": Path(result.outputs.out_map)}
    assert all(path.parent == cwd for path in outputs.values())
    return outputs


def test_artefact_qc_writes_the_columns_and_the_tiles(artefact_qc: dict[str, Path]) -> None:
    record = json.loads(artefact_qc["out_file"].read_text())
    assert artefact_qc["out_file"].name == "artefacts.json"
    assert set(ARTEFACT_COLUMNS) <= set(record)
    tiles = record["tiles"]
    for column in ARTEFACT_COLUMNS:  # the image's answer is an average of its tiles'
        values = [tile[column] for tile in tiles]
        assert min(values) - 1e-5 <= record[column] <= max(values) + 1e-5
    assert isinstance(tiles, list) and tiles
    assert set(tiles[0]) == {"origin_voxel", "weight", "quality_score", *ARTEFACT_COLUMNS}
    assert all(tile["weight"] > 0 for tile in tiles)


def test_artefact_map_lies_on_the_2mm_head_box(artefact_qc: dict[str, Path]) -> None:
    artefact_map = nb.load(artefact_qc["out_map"])
    assert artefact_qc["out_map"].name == "artefactmap.nii.gz"
    shape, affine = head_box(2)
    assert artefact_map.shape == (*shape, 6) == (96, 112, 96, 6)
    np.testing.assert_allclose(artefact_map.affine, affine)
    data = artefact_map.get_fdata()
    # Each listed tile covers its 2 mm voxels (origins rounded down to 2 mm); NaN elsewhere.
    tiles = json.loads(artefact_qc["out_file"].read_text())["tiles"]
    covered = np.zeros(shape, bool)
    for tile in tiles:
        x, y, z = (v // 2 for v in tile["origin_voxel"])
        size = TILE_SIZE // 2
        covered[x : x + size, y : y + size, z : z + size] = True
    assert 0 < covered.sum() < covered.size
    assert np.isnan(data[~covered]).all()
    assert np.isfinite(data[covered]).all()
    for index, column in enumerate(ARTEFACT_PROBABILITY_COLUMNS.values()):
        values = [tile[column] for tile in tiles]
        inside = data[covered][:, index]
        assert min(values) - 1e-4 <= inside.min() and inside.max() <= max(values) + 1e-4  # rounded
    # The corner of the first tile lies in that tile only, with its probabilities, in order.
    first = tiles[0]
    x, y, z = (v // 2 for v in first["origin_voxel"])
    expected = [first[column] for column in ARTEFACT_PROBABILITY_COLUMNS.values()]
    np.testing.assert_allclose(data[x, y, z], expected, atol=1e-4)


def test_plot_mosaic_outlines_the_artefact_map(
    artefact_qc: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shape, affine = head_box(2)
    brain = head_box_brain_mask(2)
    noise = np.random.default_rng(1).normal(0, 5, shape)
    image = tmp_path / "sub-01_res-2_T1w.nii.gz"
    nb.save(nb.Nifti1Image(np.where(brain, 100 + noise, 0).astype(np.float32), affine), image)
    monkeypatch.chdir(tmp_path)
    result = PlotMosaic(in_file=str(image), artefact_map=str(artefact_qc["out_map"])).run()
    out_file = Path(result.outputs.out_file)
    assert out_file == tmp_path / "mosaic.png"
    with Image.open(out_file) as png:
        assert png.format == "PNG"
        assert png.width >= 600


def test_plot_mosaic_outlines_onlyflagged_tiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shape, affine = head_box(2)
    image = tmp_path / "sub-01_res-2_T1w.nii.gz"
    data = np.where(head_box_brain_mask(2), 100.0, 0.0).astype(np.float32)
    nb.save(nb.Nifti1Image(data, affine), image)
    probabilities = np.full((*shape, 6), 0.1, np.float32)
    unlikely = tmp_path / "unlikely.nii.gz"
    nb.save(nb.Nifti1Image(probabilities, affine), unlikely)
    probabilities[32:64, 40:72, 32:64, 3] = 0.9  # one tile, in the middle of the brain: noise
    likely = tmp_path / "likely.nii.gz"
    nb.save(nb.Nifti1Image(probabilities, affine), likely)
    monkeypatch.chdir(tmp_path)
    drawn = {}
    for name, artefact_map in (("unlikely", unlikely), ("likely", likely)):
        result = PlotMosaic(in_file=str(image), artefact_map=str(artefact_map)).run()
        drawn[name] = outline_pixels(Path(result.outputs.out_file))
    assert drawn["unlikely"] == 0
    assert drawn["likely"] > 100


def outline_pixels(path: Path) -> int:
    """How many pixels of a PNG have the outline colour."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    return int((np.abs(rgb - np.array(to_rgb(OUTLINE_COLOR)) * 255).max(axis=-1) < 8).sum())


# --- flagged_tiles -------------------------------------------------------------------------------


def hand_made_map(**maxima: float) -> nb.Nifti1Image:
    """A 4D map of one volume per artefact on a small grid: NaN in one corner, 0.1 (below every
    review threshold) elsewhere, and each ``p_<name>=value`` at one voxel of its volume."""
    columns = list(ARTEFACT_PROBABILITY_COLUMNS.values())
    data = np.full((6, 7, 5, len(columns)), 0.1, dtype=np.float32)
    data[:2, :2, :2] = np.nan
    for k, (column, value) in enumerate(maxima.items()):
        data[3, 1 + k, 2, columns.index(column)] = value
    return nb.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))


def review(column: str) -> float:
    """The default review threshold of an artefact's probability."""
    return DEFAULT_THRESHOLDS[column].review


def test_flagged_tiles_are_those_at_or_above_the_review_threshold() -> None:
    # Given out of order: the title follows ARTEFACT_PROBABILITY_COLUMNS.
    artefact_map = hand_made_map(
        p_blur=0.9, p_ghosting=review("p_ghosting") + 0.01, p_noise=review("p_noise") - 0.01
    )
    outline, title = flagged_tiles(artefact_map)
    assert title == "Outlined: tiles flagged for ghosting, blur"
    assert outline.shape == (6, 7, 5)
    np.testing.assert_array_equal(outline.affine, artefact_map.affine)
    expected = np.zeros((6, 7, 5), np.uint8)
    expected[3, 1, 2] = expected[3, 2, 2] = 1  # p_blur and p_ghosting; not p_noise
    np.testing.assert_array_equal(np.asarray(outline.dataobj), expected)


def test_flagged_tiles_use_the_column_names_without_prefix() -> None:
    _, title = flagged_tiles(hand_made_map(p_inhomogeneity=0.9, p_spike=0.9))
    assert title == "Outlined: tiles flagged for spike, inhomogeneity"


def test_flagged_tiles_without_any() -> None:
    outline, title = flagged_tiles(hand_made_map(p_noise=review("p_noise") - 0.01))
    assert title == "No tile flagged"
    assert not np.asarray(outline.dataobj).any()
    all_nan = nb.Nifti1Image(np.full((3, 3, 3, 6), np.nan, np.float32), np.eye(4))
    outline, title = flagged_tiles(all_nan)
    assert title == "No tile flagged"
    assert not np.asarray(outline.dataobj).any()
