"""Build the bundled MNI ICBM152 2009 template from the copy that nilearn ships.

Writes ``bidsqc/data/tpl-MNI152NLin2009cSym/`` at 1 mm (nilearn's grid) and at 2 mm on the
96 x 112 x 96 head box that every network and measure of bidsqc works in. Rerun it with
``python scripts/make_template.py`` (nilearn must be installed; bidsqc itself never needs it).
"""

from pathlib import Path

import nibabel as nb
import nilearn
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage as ndi

from bidsqc.data import HEAD_BOX_SHAPE, TEMPLATE_DIR, TEMPLATE_NAME

NILEARN_DATA = Path(nilearn.__file__).parent / "datasets" / "data"
SOURCE = {
    "T1w": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "label-GM_probseg": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "label-WM_probseg": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def brain_mask_from_t1w(t1w: np.ndarray) -> np.ndarray:
    """Threshold at 20 % of the maximum (nilearn's rule), keep the largest component, fill it."""
    mask = t1w > 0.2 * t1w.max()
    labels, _ = ndi.label(mask)
    mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndi.binary_fill_holes(mask)


def head_box_affine(mask_img: nb.Nifti1Image, zoom: float = 2.0) -> np.ndarray:
    """A ``zoom``-mm grid of :data:`HEAD_BOX_SHAPE` voxels centred on the brain mask."""
    centre_vox = np.array(ndi.center_of_mass(np.asarray(mask_img.dataobj) > 0))
    centre_mm = nb.affines.apply_affine(mask_img.affine, centre_vox)
    affine = np.diag([zoom, zoom, zoom, 1.0])
    affine[:3, 3] = np.round(centre_mm - zoom * (np.array(HEAD_BOX_SHAPE) - 1) / 2)
    return affine


def main() -> None:
    out_dir = TEMPLATE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {key: nb.load(NILEARN_DATA / name) for key, name in SOURCE.items()}
    affine = images["T1w"].affine
    t1w = np.asarray(images["T1w"].dataobj, dtype=np.float32)
    mask = brain_mask_from_t1w(t1w)
    gm = np.asarray(images["label-GM_probseg"].dataobj, dtype=np.float32) / 255
    wm = np.asarray(images["label-WM_probseg"].dataobj, dtype=np.float32) / 255
    csf = np.clip(mask - gm - wm, 0, 1) * mask
    maps = {
        "T1w": t1w,
        "desc-brain_mask": mask.astype(np.float32),
        "label-GM_probseg": gm,
        "label-WM_probseg": wm,
        "label-CSF_probseg": csf,
    }
    mask_img = nb.Nifti1Image(mask.astype(np.uint8), affine)
    box = (HEAD_BOX_SHAPE, head_box_affine(mask_img))
    for key, data in maps.items():
        one_mm = nb.Nifti1Image(data, affine)
        two_mm = resample_from_to(one_mm, box, order=0 if key.endswith("mask") else 1)
        for res, img in ((1, one_mm), (2, two_mm)):
            values = np.asarray(img.dataobj)
            if key.endswith("mask"):
                values = values > 0.5
            elif key != "T1w":
                values = values * 255  # probabilities, stored as uint8 with slope 1/255
            stored = np.clip(np.round(values), 0, 255).astype(np.uint8)
            out = nb.Nifti1Image(stored, img.affine)
            if key.endswith("probseg"):
                out.header.set_slope_inter(1 / 255, 0)
            out.header.set_xyzt_units("mm")
            out.set_qform(img.affine, code=4)
            out.set_sform(img.affine, code=4)
            nb.save(out, out_dir / f"tpl-{TEMPLATE_NAME}_res-{res}_{key}.nii.gz")


if __name__ == "__main__":
    main()
