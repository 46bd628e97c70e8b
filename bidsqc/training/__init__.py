r"""Training engine for the networks: data, loss, loop, metrics and saved weights.

The engine (:func:`fit`, :func:`train_epoch`, :func:`evaluate`) knows nothing about motion: it
receives a network, an optimiser, a loss function and data loaders. The motion-specific parts
are :class:`MotionSampleDataset`, :class:`GradeRmsLoss` and :func:`motion_metrics`; the
registration-QC network reuses :class:`GradeRmsLoss` with two classes and is scored by
:func:`registration_metrics` (its pairs come from :mod:`bidsqc.training.pairs`).

Training samples on disk
------------------------
A sample folder holds the table :data:`bidsqc.training.simulation.LABELS_TABLE` (``labels.tsv``,
tab-separated, one header row) that :func:`bidsqc.training.samples.generate_motion_samples` writes,
and the volumes it lists. Required columns, in any order (other columns are ignored):

=================  ==============================================================================
column             content
=================  ==============================================================================
``filename``       path of a ``.npy`` volume, relative to the folder (or absolute): float16,
                   shape 96 x 112 x 96, the registered image on the 2 mm template head box
                   (RAS, :data:`bidsqc.data.HEAD_BOX_SHAPE`), already scaled by
                   :func:`normalise_intensity` (float16 cannot hold every scanner's raw range)
``base_image``     the base image the sample was made from: samples of one subject
                   (:func:`subject_of`) are never split between training and validation
``motion_rms_mm``  :func:`bidsqc.geometry.motion_rms_mm` of the applied motion, in
                   [0, 24.5] mm (:data:`bidsqc.networks.RMS_BINS`)
``motion_grade``   :func:`bidsqc.geometry.motion_grade` of it: 0, 1 or 2
=================  ==============================================================================

Example::

    filename	base_image	motion_rms_mm	motion_grade
    0000_sub-01_T1w_corrupt-000.npy	/data/sub-01_T1w.nii.gz	0.0	0
    0000_sub-01_T1w_corrupt-001.npy	/data/sub-01_T1w.nii.gz	12.41	2

The loader scales every volume with :func:`normalise_intensity` again (a no-op on scaled data),
so the same scaling applies at training and at inference.

Saved weights
-------------
:func:`save_model` writes the ``state_dict`` with :func:`torch.save` and a JSON model card
beside it (same name, ``.json``); :func:`load_model` reads the weights with
``weights_only=True``, so loading never runs pickled code.
"""
