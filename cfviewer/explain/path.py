"""The straight path from a counterfactual back to the image it explains: the frames of the
explainers whose counterfactual is one image (SAGen's g_a(x) from g_s(x), Attri-Net's
x + M_c(x) from x, the inpainted image from x), shown by the reader page's animation like
Latent Shift's lambda frames."""

from __future__ import annotations

import numpy as np
import torch


def path_lambdas(n_frames: int) -> np.ndarray:
    """``linspace(-1, 0, n_frames)``: -1 = the counterfactual (the first frame), 0 = the start."""
    return np.linspace(-1.0, 0.0, int(n_frames))


def path_frames(start: torch.Tensor, counterfactual: torch.Tensor, lambdas: np.ndarray) -> torch.Tensor:
    """N x K x R x R frames ``start - lambda (counterfactual - start)`` of N x 1 x R x R pairs."""
    lam = torch.as_tensor(lambdas, dtype=start.dtype, device=start.device).view(1, -1, 1, 1)
    return start - lam * (counterfactual - start)


__all__ = ["path_frames", "path_lambdas"]
