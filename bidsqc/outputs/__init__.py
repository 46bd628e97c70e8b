"""BIDS-derivative outputs: every file name, the QC tables and their column dictionaries.

All names are computed here and nowhere else. For a source image
``sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.nii.gz`` the participant level writes::

    sub-01/ses-1/anat/sub-01_ses-1_run-1_space-MNI152NLin2009cSym_res-2_desc-preproc_T1w.nii.gz
    sub-01/ses-1/anat/sub-01_ses-1_run-1_from-T1w_to-MNI152NLin2009cSym_mode-image_xfm.mat
    sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-motion_T1w.json
    sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-registration_T1w.json
    sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-artefacts_T1w.json
    sub-01/ses-1/anat/sub-01_ses-1_run-1_space-MNI152NLin2009cSym_res-2_desc-artefactmap_T1w.nii.gz
    sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-measures_T1w.json
    sub-01/figures/sub-01_ses-1_run-1_desc-raw_T1w.png
    sub-01/figures/sub-01_ses-1_run-1_desc-registered_T1w.png
    sub-01/figures/sub-01_ses-1_run-1_desc-motion_T1w.png
    sub-01/figures/sub-01_ses-1_run-1_desc-artefacts_T1w.png
    sub-01/sub-01_qc.tsv  and  sub-01/sub-01_qc.json
    sub-01.html

and the group level ``group_T1w.tsv`` and ``group_T1w.html``. A FLAIR with a T1w of the same
session also gets its rigid transform to that T1w (``from-FLAIR_to-T1w``), the QC of that
co-registration (``desc-coregistration``) and its figure. An image of an existing derivatives
dataset (``--derivatives DIR``) keeps its own name without its ``desc`` entity, under a folder
named after the dataset::

    fmriprep/sub-01/anat/sub-01_space-MNI152NLin2009cAsym_desc-registration_T1w.json
"""
