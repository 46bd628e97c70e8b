"""Tests for the artefact network: the network, its loss, its labels and training tiles, the
quality score, tile-wise inference and loading it from its model card."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bidsqc.data import head_box, head_box_brain_mask
from bidsqc.inference.artefacts import ArtefactPrediction, predict_artefacts
from bidsqc.inference.models import load_network
from bidsqc.inference.tiles import MIN_BRAIN_FRACTION, TILE_SIZE, tile_fractions, tile_origins
from bidsqc.networks import ARTEFACT_NAMES, ArtefactNet, ArtefactOutput, MotionNet, TileSpectrum
from bidsqc.outputs.columns import ARTEFACT_COLUMNS as ARTEFACT_TABLE_COLUMNS
from bidsqc.training.cards import save_model
from bidsqc.training.datasets import ARTEFACT_SAMPLE_COLUMNS, ArtefactTileDataset
from bidsqc.training.losses import ArtefactLoss
from bidsqc.training.metrics import artefact_metrics
from bidsqc.training.samples import artefact_corruption
from bidsqc.training.simulation import (
    ARTEFACTS,
    LABEL_COLUMNS,
    LABELS_TABLE,
    QUALITY_COST,
    Blur,
    Corruption,
    quality_score,
)

#: The QC-table column of each artefact, in the order of ARTEFACT_NAMES.
COLUMNS = {
    "ghosting": "p_ghosting",
    "spike": "p_spike",
    "bias": "p_inhomogeneity",
    "noise": "p_noise",
    "blur": "p_blur",
    "motion": "p_motion_artefact",
}
#: A small artefact network, cheap enough to run on every tile of a head box in a test.
SMALL = {"channels": (4, 8, 8, 16, 16), "hidden_features": (16,), "dropout": 0.0}


# --- network ------------------------------------------------------------------------------------


def test_artefact_names_order() -> None:
    assert set(ARTEFACT_NAMES) <= set(ARTEFACTS)
    assert list(COLUMNS) == list(ARTEFACT_NAMES)


@pytest.mark.parametrize(
    ("kwargs", "embedding"),
    [({}, 128), ({"channels": (4, 8, 16), "hidden_features": (32, 8)}, 16)],
    ids=["default", "small"],
)
def test_artefact_net_shapes(kwargs: dict, embedding: int) -> None:
    torch.manual_seed(0)
    net = ArtefactNet(**kwargs).eval()
    x = torch.randn(2, 3, TILE_SIZE, TILE_SIZE, TILE_SIZE)
    with torch.inference_mode():
        output = net(x)
        embed = net.embed(x)
    assert isinstance(output, ArtefactOutput)
    assert output.presence_logits.shape == (2, len(ARTEFACT_NAMES))
    assert output.quality.shape == (2,)
    assert embed.shape == (2, embedding)
    assert ((output.quality >= 0) & (output.quality <= 10)).all()


@pytest.mark.parametrize("bias", [-60.0, 0.0, 60.0])
def test_quality_stays_within_0_and_10(bias: float) -> None:
    torch.manual_seed(0)
    net = ArtefactNet(**SMALL).eval()
    with torch.no_grad():
        net.quality_head.bias.fill_(bias)
        quality = net(100 * torch.randn(3, 3, 32, 32, 32)).quality
    assert ((quality >= 0) & (quality <= 10)).all()
    if bias:
        expected = 10.0 if bias > 0 else 0.0
        torch.testing.assert_close(quality, torch.full((3,), expected), atol=1e-4, rtol=0)


def test_artefact_net_rejects_a_tile_without_context() -> None:
    with pytest.raises(ValueError, match="expected an input"):
        ArtefactNet(**SMALL)(torch.zeros(1, 1, 32, 32, 32))


def _smooth_tile(seed: int, size: int = 32) -> torch.Tensor:
    """Random anatomy-like contrast: white noise low-passed in k-space, shape (1, 1, size^3)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.fft.fftn(torch.randn(size, size, size, generator=generator))
    frequencies = torch.fft.fftfreq(size) * size
    radius = torch.sqrt(sum(f**2 for f in torch.meshgrid(*[frequencies] * 3, indexing="ij")))
    smooth = torch.fft.ifftn(noise * torch.exp(-((radius / 3) ** 2))).real
    return (1 + smooth / smooth.std())[None, None]


def test_tile_spectrum_shows_a_spike_as_a_pair_of_points() -> None:
    size, cycles = 32, torch.tensor([5, -9, 3])
    tile = _smooth_tile(0, size)
    grid = torch.stack(torch.meshgrid(*[torch.arange(size)] * 3, indexing="ij"))
    phase = 2 * torch.pi * (cycles[:, None, None, None] * grid).sum(dim=0) / size
    spiked = tile + 0.03 * torch.cos(phase)
    x = torch.cat([spiked, torch.zeros(1, 2, size, size, size)], dim=1)
    spectrum = TileSpectrum()(x)[0, 3]
    centre = size // 2
    radius = (grid - centre).float().norm(dim=0)
    brightest = torch.topk(torch.where(radius > 6, spectrum, -np.inf).flatten(), 2).indices
    points = np.stack(np.unravel_index(brightest.numpy(), spectrum.shape), axis=1)
    for spike in (centre + cycles, centre - cycles):  # within the Hann window's main lobe
        assert np.abs(points - spike.numpy()).max(axis=1).min() <= 1
    clean = TileSpectrum()(torch.cat([tile, x[:, 1:]], dim=1))[0, 3]
    assert clean[tuple(centre + cycles)] < spectrum[tuple(centre + cycles)] - 2


def test_tile_spectrum_ignores_scale_and_passes_the_channels_through() -> None:
    noisy = _smooth_tile(1) + 0.05 * torch.randn(1, 1, 32, 32, 32)
    x = torch.cat([noisy, torch.rand(1, 2, 32, 32, 32)], dim=1)
    spectrum = TileSpectrum()(x)
    assert spectrum.shape == (1, 4, 32, 32, 32)
    torch.testing.assert_close(spectrum[:, :3], x)
    change = (TileSpectrum()(5 * x)[:, 3] - spectrum[:, 3]).abs()
    assert change.median() < 1e-3  # not 0: epsilon matters where a magnitude is near zero
    assert TileSpectrum()(torch.zeros(1, 3, 32, 32, 32)).abs().max() < 1e-3


def test_frozen_encoder_gets_no_gradient() -> None:
    torch.manual_seed(0)
    net = ArtefactNet(**SMALL)
    net.freeze_encoder()
    net.train()
    assert not any(parameter.requires_grad for parameter in net.encoder.parameters())
    heads = [*net.trunk.parameters(), *net.presence_head.parameters()]
    assert all(parameter.requires_grad for parameter in [*heads, *net.quality_head.parameters()])
    assert not net.encoder.training and net.trunk.training
    running_mean = net.encoder.blocks[1].running_mean.clone()
    output = net(torch.randn(2, 3, 32, 32, 32))
    (output.presence_logits.sum() + output.quality.sum()).backward()
    torch.testing.assert_close(net.encoder.blocks[1].running_mean, running_mean)
    assert all(parameter.grad is None for parameter in net.encoder.parameters())
    assert all(parameter.grad is not None for parameter in heads)


# --- loss and metrics ---------------------------------------------------------------------------


def targets() -> dict[str, torch.Tensor]:
    return {
        "presence": torch.tensor([[1.0, 0, 1, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]),
        "quality": torch.tensor([4.0, 7.0, 10.0]),
    }


def test_loss_prefers_confident_correct_predictions() -> None:
    target = targets()
    sign = 2 * target["presence"] - 1
    right = ArtefactOutput(6 * sign, target["quality"].clone())
    wrong = ArtefactOutput(-6 * sign, target["quality"].clone())
    loss = ArtefactLoss()
    assert loss(right, target) < 1e-4
    assert loss(right, target) < loss(wrong, target)
    unsure = ArtefactOutput(torch.zeros_like(sign), target["quality"].clone())
    assert loss(right, target) < loss(unsure, target) < loss(wrong, target)


def test_loss_without_focusing_is_half_the_binary_cross_entropy() -> None:
    target = targets()
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    output = ArtefactOutput(logits, target["quality"].clone())
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target["presence"])
    torch.testing.assert_close(ArtefactLoss(gamma=0, alpha=0.5)(output, target), 0.5 * bce)
    alpha_t = torch.where(target["presence"] > 0, 0.25, 0.75)
    weighted = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target["presence"], weight=alpha_t
    )
    torch.testing.assert_close(ArtefactLoss(gamma=0, alpha=0.25)(output, target), weighted)


def test_focusing_discounts_every_term() -> None:
    target = targets()
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    output = ArtefactOutput(logits, target["quality"].clone())
    assert ArtefactLoss(gamma=2)(output, target) < ArtefactLoss(gamma=0)(output, target)


def test_quality_term() -> None:
    target = targets()
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(2))
    matched = ArtefactOutput(logits, target["quality"].clone())
    presence_only = ArtefactLoss(quality_weight=0)(matched, target)
    torch.testing.assert_close(ArtefactLoss(quality_weight=2)(matched, target), presence_only)
    off = ArtefactOutput(logits, target["quality"] + torch.tensor([1.0, 0.0, -2.0]))
    expected = presence_only + 2 * (0.1**2 + 0.2**2) / 3
    torch.testing.assert_close(ArtefactLoss(quality_weight=2)(off, target), expected)


def test_artefact_metrics_names_every_artefact() -> None:
    target = {
        "presence": torch.tensor([[1.0, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1]]).repeat(2, 1),
        "quality": torch.tensor([2.0, 8.0, 2.0, 8.0]),
    }
    output = ArtefactOutput(2 * target["presence"] - 1, target["quality"].clone())
    metrics = artefact_metrics(output, target)
    assert {f"auc_{name}" for name in ARTEFACT_NAMES} | {"quality_r2", "quality_mae"} == set(
        metrics
    )
    assert all(metrics[f"auc_{name}"] == 1.0 for name in ARTEFACT_NAMES)
    assert metrics["quality_r2"] == 1.0 and metrics["quality_mae"] == 0.0


# --- quality score and corruption ---------------------------------------------------------------


def test_quality_score() -> None:
    clean = {name: 0.0 for name in ARTEFACTS}
    assert quality_score(clean) == 10.0
    assert quality_score({}) == 10.0
    assert quality_score(clean | {"blur": 0.5}) == pytest.approx(10 - QUALITY_COST * 0.5)
    assert quality_score(clean | {"bias": 0.3, "noise": 0.2}) == pytest.approx(
        10 - QUALITY_COST * 0.5
    )
    assert quality_score(clean | {"motion": 1.0, "ghosting": 1.0}) == 0.0
    assert quality_score({name: 1.0 for name in ARTEFACTS}) == 0.0


def test_corruption_quality_score() -> None:
    assert quality_score(Corruption([]).severities) == 10.0
    blurred = Corruption([Blur(fwhm=2.0)])
    assert blurred.severities["blur"] == pytest.approx(0.5)
    assert quality_score(blurred.severities) == pytest.approx(10 - QUALITY_COST * 0.5)


def test_artefact_corruption_draws_visible_artefacts() -> None:
    """Every artefact is drawn with probability 0.2. Those but motion come at severity 0.2 or
    more, as their ranges imply; the bias field, whose severity depends on its random
    coefficients and has no hard floor (about 1 % of draws fall below 0.15, 1 in 5000 below
    0.1), stays above 0.1 in these 2000 draws. Motion comes at 1-8 mm RMS, severity 0.05-0.4,
    half of it below 2.75 mm. 26 % of the samples are clean."""
    corruption = artefact_corruption()
    rng = np.random.default_rng(0)
    draws = [corruption.sample(rng) for _ in range(2000)]
    applied: dict[str, list[float]] = {name: [] for name in ARTEFACTS}
    for draw in draws:
        for artefact in draw.artefacts:
            applied[artefact.name].append(artefact.severity)
    for name in ARTEFACT_NAMES:
        severities = np.array(applied[name])
        assert len(severities) == pytest.approx(0.2 * 2000, rel=0.15), name
        if name == "motion":
            assert 0.05 - 1e-6 <= severities.min() and severities.max() <= 0.4 + 1e-6
            assert np.median(severities) == pytest.approx(2.75 / 20, abs=0.015)
            continue
        assert severities.min() >= 0.1, name
        assert severities.max() <= 1.0, name
        if name != "bias":  # the floor follows from the ranges alone
            assert severities.min() >= 0.2 - 1e-9, name
    clean = np.mean([not draw.artefacts for draw in draws])
    assert clean == pytest.approx(0.8**6, abs=0.03)


def test_nodding_takes_its_fraction_of_the_motion_and_leaves_the_other_draws_alone(
    is_nodding,
) -> None:
    """With ``nod_fraction`` 0 the draws are those of the bundled recipe; with 0.5 about half
    of the motion is nodding (every pose a pitch alone, the head back in between), the rest
    held poses of 1-8 mm RMS."""
    default, no_nods = artefact_corruption(), artefact_corruption(nod_fraction=0.0)
    for seed in range(20):
        assert (
            default.sample(np.random.default_rng(seed)).to_dict()
            == no_nods.sample(np.random.default_rng(seed)).to_dict()
        )
    motion = artefact_corruption(nod_fraction=0.5).artefacts[0]
    rng = np.random.default_rng(0)
    draws = [motion.sample(rng) for _ in range(400)]
    nodding = [is_nodding(m.degrees, m.translation) for m in draws]
    assert np.mean(nodding) == pytest.approx(0.5, abs=0.07)
    held = [m.strength for m, nod in zip(draws, nodding, strict=True) if not nod]
    assert 1.0 - 1e-6 <= min(held) and max(held) <= 8.0 + 1e-6


# --- training tiles -----------------------------------------------------------------------------

#: Severities of the three synthetic samples (the others are 0).
SEVERITIES = [
    {},
    {"motion": 0.2, "ghosting": 0.4, "noise": 0.3},
    {"bias": 0.5, "spike": 0.25, "blur": 1.0, "noise": 1e-4},
]
#: Their presence vectors, in the order ghosting, spike, bias, noise, blur, motion.
PRESENCE = [[0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 1], [0, 1, 1, 1, 1, 0]]


def write_samples(
    root: Path, columns: tuple[str, ...] = LABEL_COLUMNS, volumes: bool = True
) -> Path:
    """Three float16 samples on the 1 mm head box, the brain mask filled with ``index + 1``,
    and their ``labels.tsv`` with ``columns`` (only the table when not ``volumes``)."""
    root.mkdir(parents=True, exist_ok=True)
    brain = head_box_brain_mask(1)
    rows = []
    for index, severities in enumerate(SEVERITIES):
        name = f"{index:04d}_sub-{index}_T1w_corrupt-000.npy"
        if volumes:
            np.save(root / name, np.where(brain, index + 1, 0).astype(np.float16))
        row = {
            "filename": name,
            "base_image": f"/data/sub-{index}/anat/sub-{index}_T1w.nii.gz",
            "index": 0,
            "motion_rms_mm": 20 * severities.get("motion", 0.0),
            "motion_grade": 0,
            **{f"severity_{key}": severities.get(key, 0.0) for key in ARTEFACTS},
        }
        rows.append({key: row[key] for key in columns})
    with (root / LABELS_TABLE).open("w", newline="") as stream:
        writer = csv.DictWriter(stream, columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_samples(tmp_path_factory.mktemp("artefact_samples"))


def test_sample_columns_are_label_columns() -> None:
    assert set(ARTEFACT_SAMPLE_COLUMNS) <= set(LABEL_COLUMNS)
    assert {f"severity_{name}" for name in ARTEFACTS} <= set(ARTEFACT_SAMPLE_COLUMNS)


def test_tile_dataset_items(sample_dir: Path) -> None:
    dataset = ArtefactTileDataset(sample_dir, tiles_per_volume=3, seed=0)
    assert len(dataset) == 3 * 3
    assert dataset.sources == [f"/data/sub-{i}/anat/sub-{i}_T1w.nii.gz" for i in range(3)]
    for index in range(len(dataset)):
        sample = index // 3
        tile, target = dataset[index]
        assert tile.shape == (3, TILE_SIZE, TILE_SIZE, TILE_SIZE)
        assert tile.dtype == torch.float32
        assert set(torch.unique(tile[0]).tolist()) <= {0.0, float(sample + 1)}
        assert 0 < float(tile[1].max()) <= sample + 1
        assert float(tile[2].max()) == pytest.approx(1.0)
        assert target["presence"].dtype == torch.float32
        assert target["presence"].tolist() == PRESENCE[sample]
        severities = {name: SEVERITIES[sample].get(name, 0.0) for name in ARTEFACTS}
        assert target["quality"].dtype == torch.float32
        assert float(target["quality"]) == pytest.approx(quality_score(severities), abs=1e-6)
    assert [float(dataset[3 * i][1]["quality"]) for i in range(3)] == pytest.approx(
        [10.0, 10 - QUALITY_COST * 0.9, 0.0], abs=1e-6
    )


def test_tile_dataset_tiles_hold_brain(sample_dir: Path) -> None:
    dataset = ArtefactTileDataset(sample_dir, tiles_per_volume=8, seed=1)
    for index in range(len(dataset)):
        tile, _ = dataset[index]
        assert float((tile[0] > 0).float().mean()) >= MIN_BRAIN_FRACTION


def test_tile_dataset_seed_fixes_the_tiles(sample_dir: Path) -> None:
    dataset = ArtefactTileDataset(sample_dir, tiles_per_volume=2, seed=7)
    again = ArtefactTileDataset(sample_dir, tiles_per_volume=2, seed=7)
    for index in (0, 3, 5):
        first, second, third = dataset[index][0], dataset[index][0], again[index][0]
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        torch.testing.assert_close(first, third, rtol=0, atol=0)


def test_unseeded_tiles_follow_torch_generator(sample_dir: Path) -> None:
    dataset = ArtefactTileDataset(sample_dir, tiles_per_volume=1)
    torch.manual_seed(3)
    first = dataset[1][0]
    torch.manual_seed(3)
    torch.testing.assert_close(dataset[1][0], first, rtol=0, atol=0)


def test_tile_dataset_subset_of_samples(sample_dir: Path) -> None:
    dataset = ArtefactTileDataset(sample_dir, samples=[2, 0], tiles_per_volume=2, seed=0)
    assert len(dataset) == 4
    assert [dataset[i][1]["presence"].tolist() for i in range(4)] == [
        PRESENCE[2],
        PRESENCE[2],
        PRESENCE[0],
        PRESENCE[0],
    ]
    assert float(dataset[0][0][0].max()) == 3.0 and float(dataset[2][0][0].max()) == 1.0


def test_tile_dataset_rejects_bad_settings(sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tiles_per_volume"):
        ArtefactTileDataset(sample_dir, tiles_per_volume=0)
    columns = tuple(column for column in LABEL_COLUMNS if column != "severity_blur")
    with pytest.raises(ValueError, match="severity_blur"):
        ArtefactTileDataset(write_samples(tmp_path / "no_blur", columns, volumes=False))
    with pytest.raises(FileNotFoundError):
        ArtefactTileDataset(tmp_path / "missing")


# --- inference ----------------------------------------------------------------------------------


def head_box_volume() -> np.ndarray:
    """A textured brain on the 1 mm head box, brighter towards +x and +z, zero elsewhere."""
    brain = head_box_brain_mask(1)
    texture = 0.5 + np.random.default_rng(0).random(brain.shape, dtype=np.float32)
    x = np.linspace(0.2, 3, brain.shape[0], dtype=np.float32)[:, None, None]
    z = np.linspace(1, 2, brain.shape[2], dtype=np.float32)[None, None, :]
    return np.where(brain, x * z * texture, 0).astype(np.float32)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return head_box_volume()


@pytest.fixture(scope="module")
def prediction(volume: np.ndarray) -> ArtefactPrediction:
    """A fresh ArtefactNet's answer, its heads' weights scaled up so that tiles disagree."""
    torch.manual_seed(0)
    net = ArtefactNet().eval()
    with torch.no_grad():
        net.presence_head.weight.mul_(20)
        net.quality_head.weight.mul_(20)
    return predict_artefacts(net, volume)


def test_prediction_columns(prediction: ArtefactPrediction) -> None:
    columns = prediction.columns()
    assert list(columns) == [
        "p_ghosting",
        "p_spike",
        "p_inhomogeneity",
        "p_noise",
        "p_blur",
        "p_motion_artefact",
        "quality_score",
    ]
    assert set(columns) == set(ARTEFACT_TABLE_COLUMNS)
    # The image's answer is an average of its tiles': it lies within their range.
    for index, name in enumerate(ARTEFACT_NAMES):
        tiles = prediction.tile_probabilities[:, index]
        assert tiles.min() - 1e-6 <= columns[COLUMNS[name]] <= tiles.max() + 1e-6
    quality = prediction.tile_quality
    assert quality.min() - 1e-5 <= columns["quality_score"] <= quality.max() + 1e-5
    assert all(isinstance(value, float) for value in columns.values())


def test_prediction_keeps_the_tiles_holding_brain(
    prediction: ArtefactPrediction, volume: np.ndarray
) -> None:
    all_origins = tile_origins(volume.shape)
    fractions = tile_fractions(head_box_brain_mask(1) & (volume > 0), all_origins)
    kept = fractions >= MIN_BRAIN_FRACTION
    assert 0 < kept.sum() < len(all_origins)
    np.testing.assert_array_equal(prediction.tile_origins, all_origins[kept])
    np.testing.assert_allclose(prediction.tile_weights, fractions[kept])
    n = int(kept.sum())
    assert prediction.tile_probabilities.shape == (n, len(ARTEFACT_NAMES))
    assert prediction.tile_quality.shape == (n,)
    # Each tile is read on its own: the tiles disagree.
    assert (prediction.tile_probabilities.std(axis=0) > 1e-4).all()


def test_image_answer_is_the_weighted_mean_of_tile_logits(prediction: ArtefactPrediction) -> None:
    p = prediction.tile_probabilities.astype(np.float64)
    logits = np.log(p / (1 - p))
    weights = prediction.tile_weights / prediction.tile_weights.sum()
    expected = 1 / (1 + np.exp(-(weights @ logits)))
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=1e-5)
    assert prediction.quality_score == pytest.approx(weights @ prediction.tile_quality, rel=1e-5)
    unweighted = 1 / (1 + np.exp(-logits.mean(axis=0)))
    assert np.abs(unweighted - expected).max() > 1e-4, "the weights should matter here"


def test_artefact_map(prediction: ArtefactPrediction) -> None:
    shape = head_box(1)[0]
    result = prediction.artefact_map(shape)
    assert result.shape == (*shape, len(ARTEFACT_NAMES) + 1)
    covered = np.zeros(shape, bool)
    for x, y, z in prediction.tile_origins:
        covered[x : x + TILE_SIZE, y : y + TILE_SIZE, z : z + TILE_SIZE] = True
    assert not covered.all()
    assert np.isnan(result[~covered]).all()
    assert np.isfinite(result[covered]).all()
    # Where tiles overlap, a voxel holds their mean: within the range of the tiles' answers.
    low, high = prediction.tile_probabilities.min(0), prediction.tile_probabilities.max(0)
    probabilities = result[covered][:, : len(ARTEFACT_NAMES)]
    assert ((probabilities >= low - 1e-6) & (probabilities <= high + 1e-6)).all()
    x, y, z = prediction.tile_origins[0]
    np.testing.assert_allclose(
        result[x, y, z],  # the corner of the first tile lies in that tile only
        [*prediction.tile_probabilities[0], prediction.tile_quality[0]],
        rtol=1e-6,
    )


def test_prediction_to_dict_is_json(prediction: ArtefactPrediction) -> None:
    record = json.loads(json.dumps(prediction.to_dict()))
    assert set(prediction.columns()) <= set(record)
    assert len(record["tiles"]) == len(prediction.tile_origins)
    tile = record["tiles"][0]
    assert tile["origin_voxel"] == prediction.tile_origins[0].tolist()
    assert set(tile) == {"origin_voxel", "weight", "quality_score", *COLUMNS.values()}


def test_predict_artefacts_rejects_bad_input(volume: np.ndarray) -> None:
    net = ArtefactNet(**SMALL)
    with pytest.raises(ValueError, match="1 mm head box"):
        predict_artefacts(net, np.zeros((96, 112, 96), np.float32))
    with pytest.raises(ValueError, match="1 mm head box"):
        predict_artefacts(net, volume[:, :, :-1])
    with pytest.raises(ValueError, match="batch_size"):
        predict_artefacts(net, volume, batch_size=0)


def test_batches_give_the_same_prediction(volume: np.ndarray) -> None:
    torch.manual_seed(0)
    net = ArtefactNet(**SMALL).eval()
    one = predict_artefacts(net, volume, batch_size=5)
    two = predict_artefacts(net, volume, batch_size=32)
    np.testing.assert_allclose(one.probabilities, two.probabilities, atol=1e-5)
    np.testing.assert_allclose(one.tile_probabilities, two.tile_probabilities, atol=1e-5)
    assert one.quality_score == pytest.approx(two.quality_score, abs=1e-4)


def test_without_brain_every_tile_counts_alike() -> None:
    """A scan whose field of view misses the template brain: all tiles, equal say."""
    volume = (~head_box_brain_mask(1)).astype(np.float32)
    torch.manual_seed(0)
    result = predict_artefacts(ArtefactNet(**SMALL).eval(), volume)
    assert len(result.tile_origins) == len(tile_origins(volume.shape))
    np.testing.assert_array_equal(result.tile_weights, 0.0)
    p = result.tile_probabilities.astype(np.float64)
    expected = 1 / (1 + np.exp(-np.log(p / (1 - p)).mean(axis=0)))
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5)
    assert not np.isnan(result.artefact_map(volume.shape)).any()


# --- saved weights ------------------------------------------------------------------------------


def card(tmp_path: Path, network: dict) -> dict:
    table = tmp_path / LABELS_TABLE
    table.write_text("filename\n")
    return {
        "training_files": [table],
        "hyperparameters": {"network": network},
        "validation_metrics": {},
        "seed": 0,
    }


def test_load_network_builds_the_card_architecture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ArtefactNet(**SMALL).eval()
    settings = {
        key: list(value) if isinstance(value, tuple) else value for key, value in SMALL.items()
    }
    card_path = save_model(net, tmp_path / "artefact.pt", card(tmp_path, settings))
    assert json.loads(card_path.read_text())["architecture"] == "ArtefactNet"
    loaded = load_network(tmp_path / "artefact.pt")
    assert type(loaded) is ArtefactNet
    assert not loaded.training
    x = torch.randn(2, 3, 32, 32, 32)
    with torch.inference_mode():
        for expected, actual in zip(net(x), loaded(x), strict=True):
            torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_load_network_defaults_to_motion_net_and_rejects_unknown_ones(tmp_path: Path) -> None:
    settings = {"channels": [4, 8, 8], "hidden_features": [8], "dropout": 0.0}
    card_path = save_model(MotionNet(**settings), tmp_path / "motion.pt", card(tmp_path, settings))
    written = json.loads(card_path.read_text())
    del written["architecture"]
    card_path.write_text(json.dumps(written))
    assert type(load_network(tmp_path / "motion.pt")) is MotionNet
    card_path.write_text(json.dumps(written | {"architecture": "ResNet"}))
    with pytest.raises(ValueError, match="unknown architecture"):
        load_network(tmp_path / "motion.pt")
