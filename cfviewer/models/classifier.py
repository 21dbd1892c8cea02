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

import math

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
        pool: ``"avg"``: global average pooling, then a linear layer (a torchvision ResNet);
            ``"lse"``: a 1 x 1 convolution gives one logit map per pathology, pooled by
            log-sum-exp (Wang et al. 2017, "ChestX-ray8", section 4.2: LSE pooling with
            ``lse_r`` between average (r -> 0) and max (r -> inf) pooling). With average
            pooling every location of the feature map gets the same share of the gradient, so
            input gradients spread over healthy lung as much as over the finding; LSE pooling
            sends the gradient to the locations that carry the evidence, which is what a
            gradient-driven counterfactual (Latent Shift) has to follow.
        lse_r: the LSE sharpness r (Wang et al. use 10).
        last_stride: stride of the last stage (1 doubles the logit map: 8 x 8 at 128 px).
    """

    def __init__(
        self,
        pathologies: Sequence[str] = PATHOLOGIES,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (1, 1, 1, 1),
        stem_width: int = 24,
        dropout: float = 0.1,
        pool: str = "avg",
        lse_r: float = 10.0,
        last_stride: int = 2,
    ):
        super().__init__()
        if pool not in ("avg", "lse"):
            raise ValueError(f"pool {pool!r}: use 'avg' or 'lse'")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride {last_stride!r}: use 1 or 2")
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
        if pool != "avg" or last_stride != 2:  # configs of average-pooled models stay as they were
            self._config.update(pool=pool, lse_r=float(lse_r), last_stride=int(last_stride))
        self.pool_kind = pool
        self.lse_r = float(lse_r)
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
            stride = 1 if i == 0 else (last_stride if i == len(widths) - 1 else 2)
            layers = [BasicBlock(c_in, w, stride=stride)]
            layers += [BasicBlock(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        if pool == "lse":
            self.fc = nn.Conv2d(c_in, len(self.pathologies), 1)
            # per-pathology calibration of the pooled logit (Platt: a * logit + b); LSE pooling
            # does not commute with scaling, so it cannot be folded into the 1 x 1 convolution
            self.register_buffer("calib_scale", torch.ones(len(self.pathologies)))
            self.register_buffer("calib_bias", torch.zeros(len(self.pathologies)))
        else:
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

    def calibrate(self, index: int, a: float, b: float) -> None:
        """Replace logit k by a * logit + b (Platt scaling, a > 0), inside the module, so
        ``forward`` returns calibrated probabilities and ``logits`` calibrated log-odds."""
        with torch.no_grad():
            if self.pool_kind == "lse":
                self.calib_bias[index] = a * self.calib_bias[index] + b
                self.calib_scale[index] *= a
            else:
                self.fc.weight[index] *= a
                self.fc.bias[index] = a * self.fc.bias[index] + b

    def logit_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-location pre-sigmoid scores N x C x h x w (``pool="lse"`` only), before
        calibration."""
        if self.pool_kind != "lse":
            raise ValueError("logit_maps: this classifier pools by average; it has no logit maps")
        return self.fc(self.dropout(self.features(x)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores, N x C."""
        if self.pool_kind == "lse":
            s = self.logit_maps(x).flatten(2)
            r = self.lse_r
            pooled = (torch.logsumexp(r * s, dim=2) - math.log(s.shape[2])) / r
            return pooled * self.calib_scale + self.calib_bias
        h = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities N x C (sigmoid applied; do not apply another one)."""
        return torch.sigmoid(self.logits(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
