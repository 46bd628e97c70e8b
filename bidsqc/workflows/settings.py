"""What every QC workflow of a run shares: where it writes, and how its networks run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nipype.pipeline import engine as pe

from bidsqc.data import network_weights

__all__ = ["QCSettings"]


@dataclass(frozen=True)
class QCSettings:
    """The settings of a participant-level run that every image's workflow takes.

    Args:
        output_dir: the derivatives root; file names come from :mod:`bidsqc.outputs.paths`.
        omp_nthreads: threads for each network; the ANTs steps run on one thread (reproducible
            registrations, see :mod:`bidsqc.preprocessing`).
        device: where the networks run: ``auto`` (CUDA when available, a node per image),
            ``cpu`` or ``cuda`` (in batches, see :attr:`batch_networks`).
        models_dir: fine-tuned networks (``--models-dir``) to use instead of the bundled ones
            that have the same name.
    """

    output_dir: Path
    omp_nthreads: int = 1
    device: str = "auto"
    models_dir: Path | None = None

    @property
    def batch_networks(self) -> bool:
        """Whether the networks run after the graph, over all its images in batches
        (:mod:`bidsqc.inference.batched`), rather than in a node per image: on a GPU
        (``--device cuda``), where one image leaves the device idle."""
        return self.device == "cuda"

    @property
    def site_quality(self) -> bool:
        """Whether the models dir holds a site-quality network (``quality.pt``)."""
        return self.models_dir is not None and (self.models_dir / "quality.pt").is_file()

    def network_node(self, interface_cls: type, network: str, name: str, mem_gb: float) -> pe.Node:
        """A node running ``network`` (:func:`~bidsqc.data.network_weights`) through
        ``interface_cls``, on these threads and this device."""
        return pe.Node(
            interface_cls(
                weights=str(network_weights(network, self.models_dir)),
                num_threads=self.omp_nthreads,
                device=self.device,
            ),
            name=name,
            n_procs=self.omp_nthreads,
            mem_gb=mem_gb,
        )
