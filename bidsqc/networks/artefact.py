"""The artefact network: presence of six artefacts and a quality score, per 64 mm tile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bidsqc.networks.encoder import EncoderNet

__all__ = [
    "ARTEFACT_NAMES",
    "ArtefactNet",
    "ArtefactOutput",
    "TileSpectrum",
]


class TileSpectrum(nn.Module):
    r"""Appends the whitened log-magnitude spectrum of the first channel: the tile in k-space,
    where a spike is a pair of points.

    A spike, one corrupt k-space sample, adds a plane wave to the whole image: in the image a
    stripe pattern of a few percent of the signal, buried in anatomy, but in the spectrum of
    any tile a bright pair of points off the centre. Anatomy's spectrum falls steeply and
    smoothly with frequency, so the log-magnitude is whitened: from each frequency is taken the
    mean over the shell of frequencies of the same radius. What is left is what breaks the
    spectrum's near-isotropy: a spike's points, ghosting's modulation along the phase-encoding
    axis. (Noise and blur change the fall-off itself, which the whitening removes; the image
    channels show them.) The tile is first tapered by a Hann window, so that its edges, where
    it cuts through anatomy, do not leak a cross of spurious frequencies. Whitening also makes
    the channel independent of the tile's scale; an empty tile gives zeros.

    Input shape ``(C, X, Y, Z)``; output shape ``(C + 1, X, Y, Z)``.
    """

    #: Magnitude floor of the spectrum, far below the content of any tile of a normalised image.
    epsilon = 1e-3

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected a batch of shape (batch, C, X, Y, Z), got {tuple(x.shape)}")
        shape = x.shape[2:]
        tapers = [
            torch.hann_window(n, periodic=False, dtype=x.dtype, device=x.device) for n in shape
        ]
        window = tapers[0][:, None, None] * tapers[1][None, :, None] * tapers[2][None, None, :]
        spatial = (-3, -2, -1)
        tile = x[:, :1]
        tile = (tile - tile.mean(dim=spatial, keepdim=True)) * window
        magnitude = torch.fft.fftshift(torch.fft.fftn(tile, dim=spatial).abs(), dim=spatial)
        spectrum = torch.log(magnitude + self.epsilon).flatten(1)
        shell = self._shells(shape, x.device)
        shell_sums = spectrum.new_zeros(len(x), int(shell.max()) + 1).index_add_(1, shell, spectrum)
        shell_means = shell_sums / torch.bincount(shell)
        whitened = (spectrum - shell_means[:, shell]).reshape(len(x), 1, *shape)
        return torch.cat([x, whitened], dim=1)

    @staticmethod
    def _shells(shape: Sequence[int], device: torch.device) -> Tensor:
        """Index of each frequency's shell (its radius from the centre, rounded down), flat."""
        axes = [torch.arange(n, device=device, dtype=torch.float32) - n // 2 for n in shape]
        squares = sum(g**2 for g in torch.meshgrid(*axes, indexing="ij"))
        return torch.sqrt(squares).long().flatten()


#: Artefacts the artefact network detects, by their :mod:`bidsqc.training.simulation` names.
ARTEFACT_NAMES = ("ghosting", "spike", "bias", "noise", "blur", "motion")


class ArtefactOutput(NamedTuple):
    """What :class:`ArtefactNet` returns, for a batch of B tiles."""

    #: Presence logit of each of :data:`ARTEFACT_NAMES`, shape (B, 6).
    presence_logits: Tensor
    #: Quality score in [0, 10], shape (B,).
    quality: Tensor


class ArtefactNet(EncoderNet):
    """Presence of each artefact and a 0-10 quality score from one 64 mm tile (MIQA-style).

    An :class:`EncoderNet` and two linear heads: one logit per artefact of
    :data:`ARTEFACT_NAMES` (several may be present at once, so each is its own sigmoid), and a
    quality score squashed into [0, 10] by ``10 * sigmoid``. On a 64^3 tile the five pooling
    blocks end at 2^3 voxels, so the first block sees the noise and stripes at 1 mm and the
    last sees a 32 mm neighbourhood, enough for ghosts and blurred edges. A bias field changes
    little over 64 mm, so the tile comes in context
    (:func:`bidsqc.inference.tiles.tiles_in_context`): channel 0 is the tile, channel 1 the whole
    head at about 3 mm, where the field is a brightness that drifts across the brain, and channel 2
    marks where the tile lies in it.
    :class:`TileSpectrum` adds the tile's spectrum as a fourth channel, where a spike, a stripe
    of a few percent of the signal in the image, is a bright pair of points.

    Args:
        channels: output channels of each encoder block.
        hidden_features: width of each layer of the trunk.
        dropout: dropout probability before each trunk layer.

    Input shape ``(3, 64, 64, 64)``; outputs of shapes ``(6,)`` and ``()``.

    Examples:
        >>> net = ArtefactNet()
        >>> net(torch.zeros(2, 3, 64, 64, 64)).presence_logits.shape
        torch.Size([2, 6])
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        hidden_features: Sequence[int] = (64,),
        dropout: float = 0.2,
    ) -> None:
        super().__init__(4, channels, hidden_features, dropout, TileSpectrum())
        self.presence_head = nn.Linear(hidden_features[-1], len(ARTEFACT_NAMES))
        self.quality_head = nn.Linear(hidden_features[-1], 1)

    def forward(self, x: Tensor) -> ArtefactOutput:
        features = self.trunk(self.embed(x))
        return ArtefactOutput(
            presence_logits=self.presence_head(features),
            quality=10 * torch.sigmoid(self.quality_head(features)[:, 0]),
        )
