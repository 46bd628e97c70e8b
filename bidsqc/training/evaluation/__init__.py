"""Evaluate the networks on real images they never saw.

Motion network, two protocols:

* **Simulated motion on held-out images** (Loizillon et al. 2023, Table 2). Each image is kept
  clean once and moved ``repeats`` times in each of the ranges (2-4), (4-6) and (6-8), every
  rotation (degrees) and translation (mm) drawn in the range as TorchIO's ``RandomMotion``
  draws them. Samples are simulated at native resolution and preprocessed as the pipeline
  does (:class:`bidsqc.training.samples.TemplateSpaceSampleWriter`, each copy registered
  itself). For each range, the decision
  "motion" (grade above 0) separates the moved images from the clean ones: balanced accuracy,
  sensitivity, specificity. ``motion_mm`` is compared with the simulated RMS (R², Spearman)
  over every sample of those ranges, clean ones included, and the clean images called
  "severe" are counted. Each image is also moved ``repeats`` times by an RMS drawn uniformly
  in 0–4 mm (``rms-0-4``), where real head motion lives; R² and Spearman are given over those
  samples and the clean ones.
* **Rated real motion** (MR-ART, Nárai et al. 2022) goes through the whole app, with every
  other output and measure: :mod:`bidsqc.training.evaluation.real`.

Registration-QC network (:func:`registration_protocol`): every held-out image, preprocessed,
against the template, and every real FLAIR/T1w pair co-registered by the pipeline, each exactly
as the pipeline leaves it ("aligned") and misaligned ``repeats`` times by rigid transforms in
each range of :data:`REGISTRATION_RANGES` (Jenkinson RMS, mm). For each range, the AUC of
``p_misregistered`` against the aligned samples, and the Spearman of ``registration_error_mm``
with the true RMS; the classical measures (``mask_dice``, ``mask_hd95_mm``, ``nmi`` and, for
template pairs, ``rereg_mm``) get the same AUCs and Spearman, on the same samples.

Artefact network (:func:`generate_artefact_protocol_samples`): every held-out image clean, and
with each artefact of :data:`bidsqc.networks.ARTEFACT_NAMES` alone at each severity of
:data:`ARTEFACT_LEVELS` (mild 0.3, moderate 0.6), simulated at native resolution and
preprocessed as the pipeline does. Per artefact and level, the AUC of its probability against
the clean images, and against the clean images and the other artefacts (the pairwise check of
the issue), with sensitivity and specificity at the network's calibrated review thresholds
(:func:`calibrate_network`), and the R² of ``quality_score`` and the fraction of clean scans
flagged with any artefact.

Results are given overall and per source, the folder of the image (MSLUB's participant
folders are skipped, so its sources are its cohorts).
"""
