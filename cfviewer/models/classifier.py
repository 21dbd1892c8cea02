"""A compact multi-label ResNet for single-channel chest radiographs.

Contract (docs/ARCHITECTURE.md): input N x 1 x R x R in [-1024, 1024] (torchxrayvision's
convention), normalised inside the module; ``forward`` returns **probabilities** (sigmoid
already applied, N x C); ``logits`` returns the pre-sigmoid scores; ``target_layer`` is the
last convolutional block (for captum's ``LayerGradCam``).

Every ReLU is its own ``nn.ReLU`` module used exactly once and never in place, so captum's
``GuidedBackprop`` / ``Deconvolution`` hooks (which replace the backward of each ReLU module)
see each activation once.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from cfviewer import PATHOLOGIES
from cfviewer.models.blocks import BasicBlock

INPUT_SCALE = 1024.0
"""Inputs live in [-INPUT_SCALE, INPUT_SCALE]; the network sees x / INPUT_SCALE."""


class Classifier(nn.Module):
    """Small ResNet: a stride-4 stem, then one stage per width (stride 2 after the first).

    At 224 px with the default widths the last block sees 7 x 7 features (Grad-CAM
    resolution), like a torchvision ResNet.

    Args:
        pathologies: output names, in output order.
        widths: channels of each stage.
        blocks: basic blocks per stage.
        stem_width: channels of the stem.
        dropout: dropout before the linear head (training only).
    """

    def __init__(
        self,
        pathologies: Sequence[str] = PATHOLOGIES,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (1, 1, 1, 1),
        stem_width: int = 24,
        dropout: float = 0.1,
    ):
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            raise ValueError("widths and blocks must be non-empty and of equal length")
        self.pathologies: list[str] = list(pathologies)
        self._config: dict[str, Any] = {
            "pathologies": list(pathologies),
            "widths": list(widths),
            "blocks": list(blocks),
            "stem_width": int(stem_width),
            "dropout": float(dropout),
        }
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem_width, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(),
            nn.Conv2d(stem_width, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        c_in = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            layers = [BasicBlock(c_in, w, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, len(self.pathologies))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of each residual branch: each block starts as identity.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    @property
    def target_layer(self) -> nn.Module:
        """The last convolutional block (input of the global pooling), for Grad-CAM."""
        return self.stages[-1]

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable), stored in bundle.json."""
        return dict(self._config)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps of the last block for inputs in [-1024, 1024]."""
        return self.stages(self.stem(x / INPUT_SCALE))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores, N x C."""
        h = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities N x C (sigmoid applied; do not apply another one)."""
        return torch.sigmoid(self.logits(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
