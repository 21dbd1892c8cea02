"""A ResNet-style autoencoder with ``encode`` / ``decode`` (the Latent Shift generator).

Like torchxrayvision's ``ResNetAE``: single channel, images in [-1024, 1024] in and out.
The encoder halves the resolution ``len(widths)`` times with residual blocks and projects to a
compact latent (``latent_channels`` x R/2^k x R/2^k: 7 x 7 at 224 px with five levels, 4 x 4 at
128 px); the decoder mirrors it with nearest-neighbour upsampling + residual blocks (no
transposed convolutions, so no checkerboard artefacts in Latent Shift frames). The output is
``1024 * tanh(.)``, so it always lies in [-1024, 1024].

Trained with the elastic-net reconstruction loss of the Latent Shift paper (L1 + L2 on the
normalised image): :func:`elastic_loss`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cfviewer.models.blocks import BasicBlock

INPUT_SCALE = 1024.0


ResBlock = BasicBlock
"""conv-BN-ReLU-conv-BN + shortcut, ReLU (the classifier's block)."""


class UpBlock(nn.Module):
    """x2 nearest-neighbour upsampling followed by a residual block."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.block = ResBlock(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.up(x))


class ResNetAE(nn.Module):
    """Residual convolutional autoencoder.

    The first level is a strided 4 x 4 convolution and the last decoder step a sub-pixel
    convolution (PixelShuffle), so no layer runs at full resolution: that keeps training and
    the many decoder passes of a Latent Shift search affordable on a CPU.

    Args:
        widths: channels after each x2 downsampling (the first one is the stem); the decoder
            mirrors them. The latent side is R / 2**len(widths).
        latent_channels: channels of the latent z.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 128, 128),
        latent_channels: int = 32,
    ):
        super().__init__()
        if not widths:
            raise ValueError("widths must not be empty")
        self._config: dict[str, Any] = {
            "widths": list(widths),
            "latent_channels": int(latent_channels),
        }
        self.downsampling = 2 ** len(widths)
        enc: list[nn.Module] = [
            nn.Conv2d(1, widths[0], 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        ]
        c = widths[0]
        for w in widths[1:]:
            enc.append(ResBlock(c, w, stride=2))
            c = w
        enc.append(nn.Conv2d(c, latent_channels, 1))
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [
            nn.Conv2d(latent_channels, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        ]
        for w in widths[-2::-1]:
            dec.append(UpBlock(c, w))
            c = w
        dec += [nn.Conv2d(c, 4, 3, padding=1), nn.PixelShuffle(2)]
        self.decoder = nn.Sequential(*dec)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable), stored in bundle.json."""
        return dict(self._config)

    def latent_shape(self, resolution: int) -> tuple[int, int, int]:
        s = resolution // self.downsampling
        return (self._config["latent_channels"], s, s)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """N x 1 x R x R in [-1024, 1024] -> latent z (N x latent_channels x R/2^k x R/2^k)."""
        if x.shape[-1] % self.downsampling or x.shape[-2] % self.downsampling:
            raise ValueError(
                f"ResNetAE needs sides divisible by {self.downsampling}, got {tuple(x.shape[-2:])}"
            )
        return self.encoder(x / INPUT_SCALE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent z -> N x 1 x R x R image in [-1024, 1024]."""
        return INPUT_SCALE * torch.tanh(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def elastic_loss(recon: torch.Tensor, target: torch.Tensor, l2_weight: float = 1.0) -> torch.Tensor:
    """Elastic-net reconstruction loss (L1 + L2) on images normalised to [-1, 1]."""
    r = recon / INPUT_SCALE
    t = target / INPUT_SCALE
    return F.l1_loss(r, t) + l2_weight * F.mse_loss(r, t)
