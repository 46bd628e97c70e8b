"""Run the bundled networks on preprocessed images.

The weights ship in the package (``bidsqc/data/models``), each with its model card, so nothing
is downloaded at run time. A network's input is the pipeline's preprocessed image: registered
to the template on the 2 mm head box (:func:`bidsqc.outputs.paths.preproc_path`), scaled by
:func:`bidsqc.inference.inputs.normalise_intensity`.

Predictions average the image and its left-right mirror (the template is symmetric and the
networks were trained with left-right flips), which costs one more forward pass and removes
the dependence on which hemisphere an artefact happens to fall.
"""
