"""Tests of the ``bidsqc-train`` command line (bidsqc.training.cli.train)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
import torch

from bidsqc.data import head_box_brain_mask, load_template
from bidsqc.inference.models import load_model, load_network
from bidsqc.networks import (
    ARTEFACT_NAMES,
    ArtefactNet,
    EdgeAlignment,
    GradeRmsNet,
    MotionNet,
    RegistrationNet,
)
from bidsqc.outputs.columns import ARTEFACT_PROBABILITY_COLUMNS
from bidsqc.training.cards import file_sha256, save_model
from bidsqc.training.cli.train import (
    SetupError,
    _load_initial_weights,
    build_parser,
    main,
    train_artefact,
)
from bidsqc.training.simulation import ARTEFACTS, LABEL_COLUMNS, LABELS_TABLE


def usage_error(capsys, argv: list[str]) -> str:
    """Return the message of the usage error that ``argv`` must raise."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_missing_images_folder_is_a_usage_error(capsys, tmp_path):
    missing = tmp_path / "no_such_folder"
    message = usage_error(capsys, ["motion", "--images", str(missing), "--out", str(tmp_path)])
    assert f"'{missing}'" in message


def test_list_without_images_is_a_usage_error(capsys, tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_text("# nothing yet\n\n")
    message = usage_error(capsys, ["motion", "--images", str(listing), "--out", str(tmp_path)])
    assert f"'{listing}' names no image" in message


def test_list_of_missing_files_is_a_usage_error(capsys, tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_text("a_T1w.nii.gz\nb_T1w.nii.gz\n")
    message = usage_error(capsys, ["motion", "--images", str(listing), "--out", str(tmp_path)])
    assert f"'{tmp_path / 'a_T1w.nii.gz'}'" in message


def test_one_image_cannot_be_split(capsys, tmp_path):
    (tmp_path / "a_T1w.nii").touch()
    message = usage_error(capsys, ["motion", "--images", str(tmp_path), "--out", str(tmp_path)])
    assert "at least 2" in message


def test_images_of_a_list_are_relative_to_it(tmp_path, monkeypatch):
    data = tmp_path / "data"
    for name in ("a_T1w.nii.gz", "b_FLAIR.nii", "sub/c_T1w.nii.gz"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).touch()
    listing = data / "train.txt"
    # Comments and blank lines are skipped; ../data/a_T1w.nii.gz is a_T1w.nii.gz again.
    listing.write_text("# base images\na_T1w.nii.gz\n\n  sub/c_T1w.nii.gz \n../data/a_T1w.nii.gz\n")
    monkeypatch.chdir(tmp_path)
    opts = build_parser().parse_args(["motion", "--images", "data/train.txt", "--out", "run"])
    assert opts.images == [data / "a_T1w.nii.gz", data / "sub/c_T1w.nii.gz"]
    assert opts.out == tmp_path / "run"
    # A folder gives every NIfTI file under it, sorted; the list file is not one.
    opts = build_parser().parse_args(["motion", "--images", "data", "--out", "run"])
    assert opts.images == [data / "a_T1w.nii.gz", data / "b_FLAIR.nii", data / "sub/c_T1w.nii.gz"]


# --- a tiny training run ----------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Train on one CPU thread: kinder to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[list[str], Path, list[Path]]:
    """Train for one epoch on 2 samples of each of 2 base images; return the arguments of the
    run, its output folder and the base images."""
    template = load_template(2)
    images = tmp_path_factory.mktemp("images")
    base_images = [images / f"sub-0{i}_T1w.nii.gz" for i in (1, 2)]
    for path, scale in zip(base_images, (1.0, 1.2), strict=True):
        nb.save(nb.Nifti1Image(scale * template.t1w.astype(np.float32), template.affine), path)
    out = tmp_path_factory.mktemp("run")
    argv = ["motion", "--images", str(images), "--out", str(out), "--epochs", "1"]
    argv += ["--samples-per-image", "2", "--batch-size", "2", "--seed", "0"]
    argv += ["--val-fraction", "0.5", "--device", "cpu"]
    assert main(argv) == 0
    return argv, out, base_images


@pytest.mark.slow
def test_the_model_card_describes_the_run(run):
    _, out, base_images = run
    assert (out / "motion.pt").is_file()
    card = json.loads((out / "motion.json").read_text())
    files = {entry["path"]: entry["sha256"] for entry in card["training_files"]}
    assert set(map(str, base_images)) <= set(files)
    assert all(len(digest) == 64 for digest in files.values())
    assert files[str(base_images[0])] != files[str(base_images[1])]
    assert card["seed"] == 0
    assert card["best_epoch"] == 1
    assert [record["epoch"] for record in card["history"]] == [1]
    assert card["hyperparameters"]["samples_per_image"] == 2
    assert card["hyperparameters"]["motion_draw"] == "ranges"
    assert card["hyperparameters"]["augment"] == "left-right flip, gamma, scale"
    assert card["split"]["validation_images"] in ([str(path)] for path in base_images)
    assert card["split"]["training_samples"] + card["split"]["validation_samples"] == 4
    assert {"grade_ba", "severe_ba", "motion_ba", "mm_mae"} <= set(card["validation_metrics"])
    model = load_model(out / "motion.pt", MotionNet, **card["hyperparameters"]["network"])
    assert isinstance(model, MotionNet)
    # The grade's threshold is calibrated on the validation image's unmoved samples, if any.
    labels = pd.read_csv(out / "samples" / LABELS_TABLE, sep="\t")
    validation = labels[labels["base_image"].isin(card["split"]["validation_images"])]
    if (validation["motion_rms_mm"] == 0).any():
        assert set(card["calibration"]["thresholds"]) == {"p_motion"}
    else:
        assert "calibration" not in card


@pytest.mark.slow
def test_a_rerun_reuses_the_samples(run, caplog):
    argv, out, _ = run
    samples = sorted((out / "samples").glob("*.npy"))
    assert len(samples) == 4
    mtimes = [path.stat().st_mtime_ns for path in samples]
    caplog.set_level(logging.INFO, logger="bidsqc.train")
    assert main(argv) == 0
    assert "Reusing the samples" in caplog.text
    assert [path.stat().st_mtime_ns for path in samples] == mtimes


@pytest.mark.slow
def test_training_can_start_from_earlier_weights(run, tmp_path):
    argv, out, _ = run
    start = tmp_path / "start.pt"
    for suffix in (".pt", ".json"):
        start.with_suffix(suffix).write_bytes((out / f"motion{suffix}").read_bytes())
    assert main([*argv, "--init-weights", str(start)]) == 0
    card = json.loads((out / "motion.json").read_text())
    assert card["initial_weights"] == {"path": str(start), "sha256": file_sha256(start)}
    start.with_suffix(".json").unlink()
    assert main([*argv, "--init-weights", str(start)]) == 2


def test_layers_added_since_the_initial_weights_start_fresh(tmp_path, caplog):
    """Weights saved before the rigid-step head existed start a RegistrationNet; weights with
    layers a network lacks do not."""
    network = {"channels": [4, 8]}
    card = {"training_files": [], "validation_metrics": {}, "seed": 0}
    card |= {"hyperparameters": {"network": network}}
    earlier = GradeRmsNet(
        EdgeAlignment.out_channels, [4, 8], [256, 64], 0.5, 2, 50, EdgeAlignment()
    )
    model = RegistrationNet(**network)
    without_step, with_step = tmp_path / "without_step.pt", tmp_path / "with_step.pt"
    save_model(earlier, without_step, card)
    save_model(model, with_step, card)
    caplog.set_level(logging.INFO, logger="bidsqc.train")
    _load_initial_weights(model, without_step)
    torch.testing.assert_close(model.trunk.state_dict(), earlier.trunk.state_dict())
    assert "start from their initialisation: rigid_step_head.0.weight" in caplog.text
    with pytest.raises(SetupError, match="layers this network lacks: rigid_step_head"):
        _load_initial_weights(earlier, with_step)


@pytest.mark.slow
def test_training_on_crops(run, caplog):
    argv, out, _ = run
    assert main([*argv, "--crop", "32", "48", "40", "--bias-field"]) == 0
    card = json.loads((out / "motion.json").read_text())
    assert card["hyperparameters"]["crop"] == [32, 48, 40]
    assert card["hyperparameters"]["augment"].startswith("bias field, ")
    assert main([*argv, "--crop", "16", "48", "40"]) == 2
    assert "must lie between 32 voxels and the head box" in caplog.text


@pytest.mark.slow
def test_samples_made_with_other_settings_are_not_reused(run, caplog):
    argv, out, _ = run
    assert main([*argv, "--seed", "1"]) == 2
    assert "another seed" in caplog.text
    assert f"'{out / 'samples'}'" in caplog.text
    assert main([*argv, "--motion-draw", "rms"]) == 2
    assert "another motion_draw" in caplog.text


@pytest.mark.slow
def test_registration_training_on_images_and_real_pairs(run, tmp_path):
    _, _, base_images = run
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{base_images[1]}\t{base_images[0]}\n")
    out = tmp_path / "registration"
    argv = ["registration", "--images", str(base_images[0].parent), "--pairs", str(pairs)]
    argv += ["--out", str(out), "--epochs", "1", "--samples-per-image", "2", "--batch-size", "2"]
    argv += ["--val-fraction", "0.5", "--device", "cpu", "--deform-fraction", "0.5"]
    assert main(argv) == 0
    card = json.loads((out / "registration.json").read_text())
    assert card["task"] == "registration"
    assert card["hyperparameters"]["nonlinear_deformation"]["probability"] == 0.5
    assert card["architecture"] == "RegistrationNet"
    assert isinstance(load_network(out / "registration.pt"), RegistrationNet)
    assert card["hyperparameters"]["misregistration_threshold_mm"] == 2.0
    assert card["hyperparameters"]["left_out_out_of_register_mm"] == {}  # both in register
    assert sum(card["hyperparameters"]["coregistered_pairs"].values()) == 1
    files = [entry["path"] for entry in card["training_files"]]
    assert str(out / "pairs" / "pairs.tsv") in files
    assert {"auc", "auc_2_4", "auc_4_plus", "mm_spearman"} <= set(card["validation_metrics"])
    assert len(list((out / "pairs").glob("*.npy"))) == 2
    assert main([*argv, "--crop", "32", "32", "32"]) == 2


def test_images_out_of_register_are_left_out_of_registration_training(monkeypatch, caplog):
    from bidsqc.training.cli.train import _in_register

    residuals = {"a.npy": 0.2, "b.npy": 7.5, "c.npy": 1.99, "d.npy": 2.0}
    monkeypatch.setattr(
        "bidsqc.training.samples.rereg_of_volumes",
        lambda volumes: [residuals[Path(volume).name] for volume in volumes],
    )
    images = [(Path(name), f"{name[0]}_T1w.nii.gz") for name in residuals]
    caplog.set_level(logging.WARNING, logger="bidsqc.train")
    kept, left_out = _in_register(images, 2.0)
    assert kept == [images[0], images[2]]
    assert left_out == {"b_T1w.nii.gz": 7.5, "d_T1w.nii.gz": 2.0}
    assert "Leaving out 2 image(s)" in caplog.text and "b_T1w.nii.gz (7.5 mm)" in caplog.text


def test_images_without_a_sample_are_reported_as_failed(tmp_path, caplog):
    from bidsqc.training.cli.train import _warn_of_images_without_sample

    table = tmp_path / LABELS_TABLE
    caplog.set_level(logging.WARNING, logger="bidsqc.train")
    _warn_of_images_without_sample([tmp_path / "a_T1w.nii.gz"], table)  # no table: left to training
    table.write_text(f"filename\tbase_image\n0.npy\t{tmp_path / 'a_T1w.nii.gz'}\n")
    _warn_of_images_without_sample([tmp_path / "a_T1w.nii.gz"], table)
    assert "No sample" not in caplog.text
    _warn_of_images_without_sample([tmp_path / "a_T1w.nii.gz", tmp_path / "b_T1w.nii.gz"], table)
    assert f"No sample of 1 image(s), whose registrations failed: {tmp_path / 'b_T1w.nii.gz'}" in (
        caplog.text
    )


def test_cuda_without_a_gpu_is_refused_before_any_sample(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    for name in ("a_T1w.nii.gz", "b_T1w.nii.gz"):
        (tmp_path / name).touch()  # never read: the device is checked first
    for network in ("motion", "registration"):
        argv = [network, "--images", str(tmp_path), "--out", str(tmp_path / network)]
        assert main([*argv, "--device", "cuda"]) == 2
        assert not (tmp_path / network / "samples").exists()
    assert "No CUDA device" in caplog.text


# --- the artefact network -----------------------------------------------------------------------


def test_artefact_takes_tiles_per_volume(capsys, tmp_path):
    for name in ("a_T1w.nii.gz", "b_T1w.nii.gz"):
        (tmp_path / name).touch()
    argv = ["artefact", "--images", str(tmp_path), "--out", str(tmp_path / "run")]
    opts = build_parser().parse_args(argv)
    assert opts.tiles_per_volume == 4
    assert opts.train is train_artefact
    assert build_parser().parse_args([*argv, "--tiles-per-volume", "2"]).tiles_per_volume == 2
    assert "--tiles-per-volume" in usage_error(capsys, [*argv, "--tiles-per-volume", "0"])
    # Only the artefact network draws tiles.
    motion = ["motion", "--images", str(tmp_path), "--out", str(tmp_path / "run")]
    assert "--tiles-per-volume" in usage_error(capsys, [*motion, "--tiles-per-volume", "2"])


def test_fractions_of_samples_take_0_to_1_the_validation_fraction_less(capsys, tmp_path):
    for name in ("a_T1w.nii.gz", "b_T1w.nii.gz"):
        (tmp_path / name).touch()
    argv = ["artefact", "--images", str(tmp_path), "--out", str(tmp_path / "run")]
    for option in ("--nod-fraction", "--strip-fraction"):
        for value in (0.0, 1.0):
            opts = build_parser().parse_args([*argv, option, str(value)])
            assert getattr(opts, option[2:].replace("-", "_")) == value
        assert "from 0 to 1" in usage_error(capsys, [*argv, option, "1.5"])
    for value in ("0", "1", "nan"):
        assert "between 0 and 1" in usage_error(capsys, [*argv, "--val-fraction", value])


def test_artefact_refuses_crop_before_any_sample(tmp_path, caplog):
    for name in ("a_T1w.nii.gz", "b_T1w.nii.gz"):
        (tmp_path / name).touch()  # never read: the crop is refused first
    out = tmp_path / "artefact"
    argv = ["artefact", "--images", str(tmp_path), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--crop", "64", "64", "64"]) == 2
    assert "--crop applies to the motion network only" in caplog.text
    assert not (out / "samples").exists()


def write_artefact_samples(
    out: Path, base_images: list[Path], per_image: int, seed: int, task: str = "artefact"
) -> Path:
    """Pre-made artefact samples in ``out/samples``, with the labels.tsv and generation.json
    that ``bidsqc-train artefact`` would have written for these settings, so that it reuses
    them instead of generating (and registering) any."""
    samples = out / "samples"
    samples.mkdir(parents=True)
    brain = head_box_brain_mask(1)
    rows = []
    for i, base in enumerate(base_images):
        for j in range(per_image):
            name = f"{i:04d}_{base.name.split('.')[0]}_corrupt-{j:03d}.npy"
            np.save(samples / name, np.where(brain, 1 + i + j, 0).astype(np.float16))
            severities = dict.fromkeys(ARTEFACTS, 0.0) | {"noise": 0.5 * j, "blur": 0.2 * i * j}
            rows.append([name, str(base), j, 0.0, 0, *(severities[key] for key in ARTEFACTS)])
    lines = ["\t".join(LABEL_COLUMNS)] + ["\t".join(map(str, row)) for row in rows]
    (samples / LABELS_TABLE).write_text("\n".join(lines) + "\n")
    settings = {
        "task": task,
        "images": [str(path) for path in base_images],
        "samples_per_image": per_image,
        "seed": seed,
    }
    (samples / "generation.json").write_text(json.dumps(settings))
    return samples


def premade_artefact_run(tmp_path: Path, task: str) -> tuple[list[str], Path, list[Path]]:
    """The command line of a tiny artefact training on samples pre-made for ``task``."""
    images = tmp_path / "images"
    images.mkdir()
    base_images = [images / f"sub-0{i}_T1w.nii.gz" for i in (1, 2)]
    for path in base_images:
        path.write_bytes(path.name.encode())  # never read, only hashed for the card
    out = tmp_path / "artefact"
    write_artefact_samples(out, base_images, per_image=2, seed=0, task=task)
    argv = ["artefact", "--images", str(images), "--out", str(out), "--epochs", "1"]
    argv += ["--samples-per-image", "2", "--tiles-per-volume", "1", "--batch-size", "2"]
    argv += ["--val-fraction", "0.5", "--device", "cpu", "--seed", "0"]
    return argv, out, base_images


def test_samples_of_another_network_are_not_reused(tmp_path, caplog):
    argv, out, _ = premade_artefact_run(tmp_path, task="motion")
    assert main(argv) == 2
    assert "another task" in caplog.text
    assert not (out / "artefact.pt").exists()


@pytest.mark.parametrize("option", ["--nod-fraction", "--strip-fraction"])
def test_artefact_samples_made_otherwise_are_not_reused(tmp_path, caplog, option):
    argv, out, _ = premade_artefact_run(tmp_path, task="artefact")
    assert main([*argv, option, "0.5"]) == 2
    assert f"another {option[2:].replace('-', '_')}" in caplog.text
    assert not (out / "artefact.pt").exists()


def test_artefact_training_on_premade_samples(tmp_path, monkeypatch):
    def no_generation(*args, **kwargs):
        raise AssertionError("the pre-made samples should have been reused")

    monkeypatch.setattr("bidsqc.training.samples.generate_artefact_samples", no_generation)
    argv, out, base_images = premade_artefact_run(tmp_path, task="artefact")
    samples = out / "samples"
    assert main(argv) == 0
    assert (out / "artefact.pt").is_file()
    card = json.loads((out / "artefact.json").read_text())
    assert card["task"] == "artefact"
    assert card["architecture"] == "ArtefactNet"
    hyperparameters = card["hyperparameters"]
    assert set(hyperparameters["loss"]) == {"focal_gamma", "focal_alpha", "quality_weight"}
    assert hyperparameters["tiles_per_volume_per_epoch"] == 1
    assert hyperparameters["crop"] is None
    assert hyperparameters["nod_fraction"] == hyperparameters["strip_fraction"] == 0.0
    assert card["split"]["training_samples"] == card["split"]["validation_samples"] == 2
    assert card["split"]["validation_images"] in ([str(path)] for path in base_images)
    files = [entry["path"] for entry in card["training_files"]]
    assert files == [*map(str, base_images), str(samples / LABELS_TABLE)]
    expected = {f"auc_{name}" for name in ARTEFACT_NAMES} | {"quality_r2", "quality_mae"}
    assert expected <= set(card["validation_metrics"])
    model = load_model(out / "artefact.pt", ArtefactNet, **hyperparameters["network"])
    assert isinstance(model, ArtefactNet)
    # Calibrated on the validation image's samples, one of them clean.
    calibration = card["calibration"]
    assert calibration["samples"] == 2
    assert set(calibration["thresholds"]) == set(ARTEFACT_PROBABILITY_COLUMNS.values())
    assert load_network(out / "artefact.pt").thresholds == calibration["thresholds"]
