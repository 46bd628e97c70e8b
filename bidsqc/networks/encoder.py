"""The convolutional encoder and the trunk that every bidsqc network shares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "Conv5Encoder",
    "EncoderNet",
]


class Conv5Encoder(nn.Module):
    """Convolutional encoder: an image to one embedding vector.

    Each block is a 3x3x3 convolution (padding 1, no bias: the batch norm has one), batch
    normalisation, ReLU and 2x2x2 max pooling, so block ``k`` sees the image at 1/2^k of its
    resolution. A global average pool then makes the embedding independent of the input size,
    so any input of at least 2^n voxels per axis (n blocks; 32 for the default five) works.

    The default encoder has 294,472 parameters (a :class:`MotionNet` 347,389). Train with
    batches of 2 or more: PyTorch's CPU dispatch sends 3D convolutions of a single sample with
    few channels to its native, single-threaded kernel instead of oneDNN (timings in
    docs/benchmarks.md).

    Args:
        in_channels: number of input channels: 1 for one image, 2 for an image and the template.
        channels: output channels of each block, one block per entry.

    Input shape ``(in_channels, X, Y, Z)``; output shape ``(channels[-1],)``.

    Examples:
        >>> encoder = Conv5Encoder(in_channels=1)
        >>> encoder(torch.zeros(2, 1, 32, 32, 32)).shape
        torch.Size([2, 128])
    """

    def __init__(
        self, in_channels: int = 1, channels: Sequence[int] = (8, 16, 32, 64, 128)
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {in_channels}")
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        self.in_channels = in_channels
        self.out_features = channels[-1]
        blocks = []
        for n_in, n_out in zip((in_channels, *channels[:-1]), channels, strict=True):
            blocks += [
                nn.Conv3d(n_in, n_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm3d(n_out),
                nn.ReLU(inplace=True),
                nn.MaxPool3d(2),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.min_size = 2 ** len(channels)

    def forward(self, x: Tensor) -> Tensor:
        expected = f"(batch, {self.in_channels}, X, Y, Z) with X, Y, Z >= {self.min_size}"
        if x.ndim != 5 or x.shape[1] != self.in_channels or min(x.shape[2:]) < self.min_size:
            raise ValueError(f"expected an input of shape {expected}, got {tuple(x.shape)}")
        return torch.flatten(nn.functional.adaptive_avg_pool3d(self.blocks(x), 1), 1)


class EncoderNet(nn.Module):
    """A :class:`Conv5Encoder` and a fully connected trunk (dropout, linear, ReLU per layer),
    for the heads of a subclass to read; what every bidsqc network shares.

    For transfer learning, :meth:`embed` gives the encoder's output and :meth:`freeze_encoder`
    fixes the encoder, so that only the trunk and heads train (as Loizillon et al. fine-tune the
    three FC layers). A frozen encoder stays in eval mode, so its batch statistics are kept too.

    :attr:`thresholds` holds the decision thresholds calibrated for the trained weights (e.g.
    ``{"p_motion": 0.36}``), which :func:`bidsqc.inference.models.load_network` reads from the model
    card; it is empty for a network that was not calibrated.

    Args:
        in_channels: number of input channels of the encoder.
        channels: output channels of each encoder block.
        hidden_features: width of each layer of the trunk.
        dropout: dropout probability before each trunk layer.
        features: a module applied to the input before the encoder (none by default).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        hidden_features: Sequence[int],
        dropout: float,
        features: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not hidden_features:
            raise ValueError("hidden_features must list at least one layer width")
        self.features = nn.Identity() if features is None else features
        self.encoder = Conv5Encoder(in_channels, channels)
        layers = []
        for n_in, n_out in zip(
            (self.encoder.out_features, *hidden_features[:-1]), hidden_features, strict=True
        ):
            layers += [nn.Dropout(dropout), nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers)
        self.thresholds: dict[str, float] = {}

    def embed(self, x: Tensor) -> Tensor:
        """The encoder's embedding, shape (B, channels[-1])."""
        return self.encoder(self.features(x))

    def freeze_encoder(self) -> None:
        """Stop training the encoder: no gradients, and batch norm kept in eval mode."""
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> EncoderNet:
        super().train(mode)
        if not any(parameter.requires_grad for parameter in self.encoder.parameters()):
            self.encoder.eval()
        return self
