"""Motion training samples: corrupted in native space, preprocessed like the pipeline, seeded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from scipy import ndimage as ndi

from bidsqc.data import HEAD_BOX_SHAPE, load_template
from bidsqc.geometry import motion_grade
from bidsqc.inference.inputs import normalise_intensity
from bidsqc.preprocessing import register_to_template, reorient_to_ras, resample_to_zoom
from bidsqc.training.datasets import MotionSampleDataset
from bidsqc.training.samples import (
    MOTION_DRAWS,
    RandomMotionLevel,
    TemplateSpaceSampleWriter,
    brain_of_clean_image,
    generate_artefact_samples,
    generate_motion_samples,
    rereg_of_volumes,
)
from bidsqc.training.simulation import LABEL_COLUMNS


def test_motion_levels_cover_the_protocol_in_both_directions():
    rng = np.random.default_rng(0)
    motions = [RandomMotionLevel(levels=(1, 8)).sample(rng) for _ in range(200)]
    degrees = np.concatenate([np.ravel(m.degrees) for m in motions])
    assert (degrees < 0).any() and (degrees > 0).any()
    assert 0 <= np.abs(degrees).min() and np.abs(degrees).max() <= 9
    strengths = [m.strength for m in motions]
    assert min(strengths) < 4.5 < 11.7 < max(strengths)
    with pytest.raises(ValueError, match="levels"):
        RandomMotionLevel(levels=(0.5, 2))


@pytest.fixture(scope="module")
def base_image(tmp_path_factory):
    template = load_template(2)
    path = tmp_path_factory.mktemp("base") / "brain_T1w.nii.gz"
    nb.save(nb.Nifti1Image(template.t1w.astype(np.float32), template.affine), path)
    return path


@pytest.mark.parametrize("draw", MOTION_DRAWS)
def test_samples_are_written_with_their_labels_and_reproducible(base_image, tmp_path, draw):
    tables = [
        generate_motion_samples([base_image], tmp_path / run, n_per_image=2, seed=3, draw=draw)
        for run in ("a", "b")
    ]
    rows = [list(csv.DictReader(table.open(), delimiter="\t")) for table in tables]
    assert len(rows[0]) == 2
    assert list(rows[0][0]) == list(LABEL_COLUMNS)
    for row, twin in zip(rows[0], rows[1], strict=True):
        assert row == twin
        assert int(row["motion_grade"]) == motion_grade(float(row["motion_rms_mm"]))
        volume = np.load(tables[0].parent / row["filename"])
        assert volume.shape == HEAD_BOX_SHAPE
        assert volume.dtype == np.float16
        # Multi-threaded ANTs sums in varying order, so registrations agree closely, not exactly.
        twin_volume = np.load(tables[1].parent / twin["filename"])
        difference = np.abs(volume.astype(np.float64) - twin_volume)
        assert difference.max() < 0.01 * volume.max()
        assert difference.mean() < 1e-3 * volume.max()
    # The training engine reads the table as it is.
    dataset = MotionSampleDataset(tables[0].parent)
    assert len(dataset) == 2
    assert dataset[0][0].shape == (1, *HEAD_BOX_SHAPE)


def test_artefact_samples_with_nods_skull_stripped(base_image, tmp_path, is_nodding):
    """With ``nod_fraction`` 1 every moved sample nods (pitch alone, every other pose the
    unmoved head); with ``strip_fraction`` 1 every sample is zero outside the clean brain, the
    one with noise (seed 4), which would fill the whole box, among them."""
    table = generate_artefact_samples(
        [base_image], tmp_path, n_per_image=6, seed=4, nod_fraction=1.0, strip_fraction=1.0
    )
    rows = list(csv.DictReader(table.open(), delimiter="\t"))
    assert len(rows) == 6
    records = [json.loads((tmp_path / f"{row['filename'][:-4]}.json").read_text()) for row in rows]
    for row in rows:
        inside = np.load(tmp_path / row["filename"]) != 0
        assert inside.shape == tuple(2 * n for n in HEAD_BOX_SHAPE)
        assert 0.05 * inside.size < inside.sum() < 0.4 * inside.size
    motions = [a["params"] for r in records for a in r["artefacts"] if a["name"] == "motion"]
    assert len(motions) == 2  # seed 4
    assert all(is_nodding(motion["degrees"], motion["translation"]) for motion in motions)


def test_a_motion_sample_of_a_clean_image_is_what_the_motion_network_reads(base_image, tmp_path):
    image = nb.load(base_image)
    filename = TemplateSpaceSampleWriter(resolution=2)(image, tmp_path / "sample", image)
    sample = np.load(tmp_path / filename).astype(np.float64)
    registered = register_to_template(resample_to_zoom(reorient_to_ras(image)), tmp_path / "reg")
    expected = normalise_intensity(np.asarray(registered.registered.dataobj, dtype=np.float32))
    assert sample.shape == HEAD_BOX_SHAPE
    assert np.abs(sample - expected).mean() < 1e-3 * expected.max()


@pytest.mark.parametrize("resolution", [2, 1])  # the motion and the artefact network's input
def test_stripped_samples_are_zero_outside_the_clean_brain(base_image, tmp_path, resolution):
    brain = nb.load(base_image)
    assert (brain_of_clean_image(brain) == (brain.get_fdata() > 0)).all()  # skull-stripped
    data = np.pad(brain.get_fdata(), 16)
    inside = data > 0
    scalp = ndi.binary_dilation(inside, iterations=8) & ~ndi.binary_dilation(inside, iterations=4)
    affine = brain.affine @ nb.affines.from_matvec(np.eye(3), [-16] * 3)
    image = nb.Nifti1Image(np.where(scalp, np.percentile(data[inside], 90), data), affine)
    stripped = TemplateSpaceSampleWriter(resolution, strip_fraction=1.0)
    head = TemplateSpaceSampleWriter(resolution)
    volumes = [
        np.load(tmp_path / writer(image, tmp_path / name, image))
        for writer, name in ((stripped, "stripped"), (head, "head"))
    ]
    inside = volumes[0] != 0
    assert 0.05 * inside.size < inside.sum() < 0.4 * inside.size
    assert np.count_nonzero(volumes[1][~inside]) > 0.05 * inside.size  # the scalp


def test_which_samples_are_stripped_follows_their_names_not_their_labels():
    writer = TemplateSpaceSampleWriter(resolution=2, strip_fraction=0.5)
    names = [
        Path(f"{index:04d}_sub-01_T1w_corrupt-{copy:03d}")
        for index in range(40)
        for copy in range(10)
    ]
    chosen = [writer._stripped(name) for name in names]
    assert chosen == [writer._stripped(name) for name in names]
    assert 0.4 < np.mean(chosen) < 0.6
    assert not any(TemplateSpaceSampleWriter(resolution=2)._stripped(name) for name in names)
    with pytest.raises(ValueError, match="strip_fraction"):
        TemplateSpaceSampleWriter(resolution=2, strip_fraction=1.5)


def test_motion_draws_are_those_of_the_command_line(tmp_path):
    from bidsqc.training.cli.train import MOTION_DRAWS as CHOICES

    assert CHOICES == MOTION_DRAWS
    with pytest.raises(ValueError, match="draw must be one of"):
        generate_motion_samples([], tmp_path, n_per_image=1, seed=0, draw="poses")


def test_sample_writers_take_the_networks_resolutions():
    with pytest.raises(ValueError, match="resolution"):
        TemplateSpaceSampleWriter(resolution=3)


def test_rereg_of_volumes_measures_how_far_each_is_from_register(tmp_path):
    from bidsqc.training.pairs import RandomMisalignment, misaligned

    template = load_template(2)
    shift = RandomMisalignment((6.0, 6.0), scaling=False).sample(np.random.default_rng(0))
    paths = [tmp_path / "aligned.npy", tmp_path / "shifted.npy"]
    np.save(paths[0], template.t1w.astype(np.float16))
    np.save(paths[1], misaligned(template.t1w, shift).astype(np.float16))
    aligned, shifted = rereg_of_volumes(paths)
    assert aligned < 0.5
    assert shifted == pytest.approx(6.0, abs=1.0)
