"""nipype interface that writes derivatives to the paths :mod:`bidsqc.outputs` computed."""

from __future__ import annotations

import json

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    TraitedSpec,
    traits,
)

from bidsqc.interfaces import QCInterface
from bidsqc.outputs.files import copy_atomically, write_text_atomically

__all__ = ["WriteDerivatives"]


class _WriteDerivativesInputSpec(BaseInterfaceInputSpec):
    in_files = traits.List(File(exists=True), mandatory=True)
    out_paths = traits.List(traits.Str, mandatory=True, desc="one destination per in_file")
    sidecars = traits.Dict(traits.Str, traits.Dict, desc="JSON sidecars to write, by path")


class _WriteDerivativesOutputSpec(TraitedSpec):
    out_paths = traits.List(traits.Str)


class WriteDerivatives(QCInterface):
    """Copy each file to its derivative path, atomically, and write the JSON sidecars."""

    input_spec = _WriteDerivativesInputSpec
    output_spec = _WriteDerivativesOutputSpec

    def _run_interface(self, runtime):
        if len(self.inputs.in_files) != len(self.inputs.out_paths):
            raise ValueError("in_files and out_paths must have the same length")
        for source, destination in zip(self.inputs.in_files, self.inputs.out_paths, strict=True):
            copy_atomically(source, destination)
        for destination, content in self.inputs.sidecars.items():
            write_text_atomically(destination, json.dumps(content, indent=2) + "\n")
        self._results["out_paths"] = list(self.inputs.out_paths)
        return runtime
