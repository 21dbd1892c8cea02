"""Attri-Net: an inherently interpretable multi-label classifier (Sun et al., "Inherently
Interpretable Multi-Label Classification Using Class-Specific Counterfactuals", MIDL 2023).

The model (section 2, Fig. 1):

* **Class attribution maps** (section 2.1). One image-to-image generator M, switched between
  classes by a task code: ``M_c(x) = M(x, t_c)``. t_c is the one-hot code of class c with each
  entry repeated ``n_ones`` times (the paper: "spatially upsampled by a factor of 20"), turned
  into a task embedding by a mapping network of ``n_fc`` fully connected layers (Table 4:
  8 x FC) that drives an AdaIN layer after every convolution (Sun et al. 2021's task
  switching; every instance norm of the StarGAN generator replaced by AdaIN). The output layer
  of Table 4: ``M_c(x) = tanh(x + out) - x``, with x in [-1, 1], so the counterfactual
  ``x + M_c(x) = tanh(x + out)`` is an image ("how each pixel should change to remove the
  effect of class c").
* **Logistic regression on the pooled map** (section 2.2, eq. 3):
  ``p(y_c | x) = sigmoid(sum_ij w_ij^(c) S_gamma(M_c(x))_ij + b_c)``, S_gamma the average
  pooling by gamma (the paper's 32 at 320 px, a 10 x 10 grid; here gamma is chosen so the grid
  is about 8 x 8: 16 at 128 px). The reference code's ``nn.Linear`` has the bias b_c.
* **Class centres** v_{y_c=0}, v_{y_c=1} (section 2.2, eq. 4): the prototypical maps of each
  class's negatives and positives, learnt by the centre loss; kept with the model for the
  global explanation of Appendix A.2 (they play no part in a prediction).

The WGAN-GP critic D(x, t_c) (section 2.1, Appendix B.1, Table 5) is :class:`AttriCritic`: it
is needed only for training (:mod:`cfviewer.models.attrinet_train`) and is not part of a bundle.

Sizes (Tables 4 and 5 are for 320 px on a V100; this CPU trains in 45 minutes): the generator
keeps the paper's layer types and order -- 7x7 conv, two 4x4 stride-2 convs, residual blocks,
two 4x4 transposed convs, a 7x7 conv to one channel, AdaIN + ReLU after each but the last -- with
``width`` channels at full resolution (paper 64; default 16) and ``n_res`` residual blocks
(paper 5; default 3). The critic keeps its 4x4 stride-2 conv stack and 3x3 output conv with
``critic_width`` channels first (paper 64; default 16) and ``critic_layers`` stride-2 layers
(paper 5 + the first; default 4 + the first, which at 128 px leaves 8 x 8 patches, as the paper's
at 320 px leaves 10 x 10).

Contract as every cfviewer classifier (a :class:`~cfviewer.models.bundle.Bundle` holds it):
input N x 1 x R x R in [-1024, 1024]; ``forward`` returns calibrated probabilities N x C;
``logits`` the log-odds. :meth:`AttriNet.class_maps` gives M_c(x) for each row's class (in
[-1, 1] units; :func:`to_grey_levels` scales them to the film's). Every ReLU is its own module
used once and never in place, so captum's guided backprop can explain this model too.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cfviewer import PATHOLOGIES

INPUT_SCALE = 1024.0
"""Inputs live in [-INPUT_SCALE, INPUT_SCALE]; the generator sees x / INPUT_SCALE in [-1, 1]
(the reference's images are in [-1, 1])."""


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return (x / INPUT_SCALE).clamp(-1.0, 1.0)


def to_grey_levels(m: torch.Tensor) -> torch.Tensor:
    """A map or image in [-1, 1] units -> the film's [-1024, 1024] units."""
    return m * INPUT_SCALE


def default_pool(resolution: int) -> int:
    """gamma such that the pooled grid is about 8 x 8 (16 at 128 px, 28 at 224 px)."""
    return max(1, int(round(resolution / 8)))


class PixelNorm(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z / torch.sqrt(torch.mean(z * z, dim=1, keepdim=True) + 1e-8)


class TaskMapping(nn.Module):
    """Task code t_c -> task embedding t'_c: pixel norm, then ``n_fc`` x (FC, LeakyReLU 0.2)
    (Table 4's "8 x FC(L100, L100)"; dimension = C x n_ones)."""

    def __init__(self, dim: int, n_fc: int = 8):
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()]
        for _ in range(int(n_fc)):
            layers += [nn.Linear(dim, dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code)


class AdaIN(nn.Module):
    """Instance norm whose per-channel scale and shift come from the task embedding (the
    affine map is initialised to scale 1, shift 0, as the reference)."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.style = nn.Linear(dim, 2 * channels)
        with torch.no_grad():
            self.style.weight.mul_(0.1)
            self.style.bias.zero_()
            self.style.bias[:channels] = 1.0

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, shift = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return self.norm(h) * scale + shift


class AdaConv(nn.Module):
    """Conv (or transposed conv), AdaIN, ReLU: Table 4's Ada_Conv / Ada_DECONV."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, dim: int,
                 transpose: bool = False):
        super().__init__()
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.conv = conv(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.ada = AdaIN(cout, dim)
        self.act = nn.ReLU()

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.act(self.ada(self.conv(h), w))


class AdaResBlock(nn.Module):
    """Two 3x3 convs with AdaIN (ReLU between them) and an identity skip: Ada_ResBlock."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.ada1 = AdaIN(channels, dim)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.ada2 = AdaIN(channels, dim)

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return h + self.ada2(self.conv2(self.act(self.ada1(self.conv1(h), w))), w)


class AttriGenerator(nn.Module):
    """M(x, t): Table 4 with ``width`` channels at full resolution and ``n_res`` blocks."""

    def __init__(self, dim: int, width: int = 16, n_res: int = 3, n_fc: int = 8):
        super().__init__()
        self.mapping = TaskMapping(dim, n_fc)
        w = int(width)
        self.down = nn.ModuleList([
            AdaConv(1, w, 7, 1, 3, dim),
            AdaConv(w, 2 * w, 4, 2, 1, dim),
            AdaConv(2 * w, 4 * w, 4, 2, 1, dim),
        ])
        self.res = nn.ModuleList([AdaResBlock(4 * w, dim) for _ in range(int(n_res))])
        self.up = nn.ModuleList([
            AdaConv(4 * w, 2 * w, 4, 2, 1, dim, transpose=True),
            AdaConv(2 * w, w, 4, 2, 1, dim, transpose=True),
        ])
        self.out = nn.Conv2d(w, 1, 7, padding=3, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0.0)
        nn.init.normal_(self.out.weight, std=1e-3)  # start near M = tanh(x) - x

    def forward(self, x01: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """M(x, t) for x in [-1, 1] (N x 1 x R x R) and task codes N x dim."""
        w = self.mapping(code)
        h = x01
        for layer in self.down:
            h = layer(h, w)
        for block in self.res:
            h = block(h, w)
        for layer in self.up:
            h = layer(h, w)
        return torch.tanh(x01 + self.out(h)) - x01


class AttriCritic(nn.Module):
    """D(x, t): the WGAN critic of Table 5, task-switched by its own mapping network; one 4x4
    stride-1 conv, ``layers`` 4x4 stride-2 convs (each doubling the channels, at most
    ``max_width``), AdaIN + ReLU after each, a 3x3 conv to one channel, averaged over the
    patches (as the reference)."""

    def __init__(self, dim: int, width: int = 16, layers: int = 4, n_fc: int = 8, max_width: int = 512):
        super().__init__()
        self.mapping = TaskMapping(dim, n_fc)
        blocks = [AdaConv(1, width, 4, 1, 1, dim)]
        c = int(width)
        for _ in range(int(layers)):
            c2 = min(2 * c, int(max_width))
            blocks.append(AdaConv(c, c2, 4, 2, 1, dim))
            c = c2
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(c, 1, 3, padding=1, bias=False)

    def forward(self, x01: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        w = self.mapping(code)
        h = x01
        for b in self.blocks:
            h = b(h, w)
        return self.out(h).flatten(1).mean(1)


class PooledLogisticRegression(nn.Module):
    """One logistic regression per class on its average-pooled map (eq. 3): log-odds of row i =
    w[c_i] . S_gamma(M_{c_i}(x_i)) + b[c_i], then a per-class Platt calibration (a, b) folded in
    as ``calib_scale`` / ``calib_bias`` (still a logistic regression on the same pooled map)."""

    def __init__(self, n_classes: int, grid: int, pool: int):
        super().__init__()
        self.pool = int(pool)
        self.grid = int(grid)
        self.weight = nn.Parameter(torch.zeros(n_classes, grid * grid))
        self.bias = nn.Parameter(torch.zeros(n_classes))
        nn.init.uniform_(self.weight, -1.0 / grid, 1.0 / grid)
        self.register_buffer("calib_scale", torch.ones(n_classes))
        self.register_buffer("calib_bias", torch.zeros(n_classes))

    def pooled(self, maps: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(maps, self.pool).flatten(1)

    def forward(self, maps: torch.Tensor, idx: torch.Tensor, calibrated: bool = True) -> torch.Tensor:
        z = (self.pooled(maps) * self.weight[idx]).sum(1) + self.bias[idx]
        if calibrated:
            z = z * self.calib_scale[idx] + self.calib_bias[idx]
        return z


class AttriNet(nn.Module):
    """Attri-Net (module docstring): task-switched generator + pooled logistic regressions +
    class centres. The prediction of class c is a linear function of M_c(x) only.

    Args:
        pathologies: classes, in output order.
        resolution: side R of the input (the pooling grid and the centres depend on it).
        width, n_res, n_fc: generator sizes (module docstring).
        n_ones: entries per class in the task code (the paper's 20).
        pool: gamma of S_gamma (default: :func:`default_pool`, an 8 x 8 grid).
    """

    def __init__(self, pathologies: Sequence[str] = PATHOLOGIES, resolution: int = 128, width: int = 16,
                 n_res: int = 3, n_fc: int = 8, n_ones: int = 20, pool: int | None = None):
        super().__init__()
        self.pathologies = list(pathologies)
        if not self.pathologies:
            raise ValueError("AttriNet: give at least one pathology")
        self.resolution = int(resolution)
        self.width, self.n_res, self.n_fc, self.n_ones = int(width), int(n_res), int(n_fc), int(n_ones)
        self.pool = int(pool) if pool else default_pool(self.resolution)
        if self.resolution % 4 or self.resolution % self.pool:
            raise ValueError(f"AttriNet: resolution {self.resolution} must be divisible by 4 and by the "
                             f"pooling factor {self.pool}")
        n = len(self.pathologies)
        self.code_dim = n * self.n_ones
        codes = torch.zeros(n, self.code_dim)
        for i in range(n):
            codes[i, i * self.n_ones:(i + 1) * self.n_ones] = 1.0
        self.register_buffer("task_codes", codes)
        self.generator = AttriGenerator(self.code_dim, self.width, self.n_res, self.n_fc)
        self.head = PooledLogisticRegression(n, self.resolution // self.pool, self.pool)
        self.register_buffer("centers", torch.zeros(n, 2, self.resolution * self.resolution))

    def config(self) -> dict[str, Any]:
        return {"pathologies": self.pathologies, "resolution": self.resolution, "width": self.width,
                "n_res": self.n_res, "n_fc": self.n_fc, "n_ones": self.n_ones, "pool": self.pool}

    # ------------------------------------------------------------------ maps
    def _index(self, idx: Any, n: int, device: torch.device) -> torch.Tensor:
        t = torch.as_tensor(idx, dtype=torch.long, device=device).reshape(-1)
        if t.numel() == 1 and n != 1:
            t = t.expand(n)
        if t.numel() != n:
            raise ValueError(f"AttriNet: {n} images but {t.numel()} class indices")
        return t

    def maps01(self, x01: torch.Tensor, idx: Any) -> torch.Tensor:
        """M_c(x) in [-1, 1] units for images already in [-1, 1] (training)."""
        k = self._index(idx, len(x01), x01.device)
        return self.generator(x01, self.task_codes[k])

    def class_maps(self, x: torch.Tensor, idx: Any) -> torch.Tensor:
        """M_{c_i}(x_i) (N x 1 x R x R, [-1, 1] units) of films in [-1024, 1024]; ``idx`` one
        class index per row (or one for all)."""
        return self.maps01(to_unit(x), idx)

    def logits_of(self, x: torch.Tensor, idx: Any) -> torch.Tensor:
        """Log-odds of each row's class only (one generator pass per row)."""
        k = self._index(idx, len(x), x.device)
        return self.head(self.class_maps(x, k), k)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """N x C log-odds: one generator pass per image and class (C x N maps)."""
        n, c = len(x), len(self.pathologies)
        k = torch.arange(c, device=x.device).repeat_interleave(n)
        xx = x.repeat(c, 1, 1, 1)
        return self.logits_of(xx, k).reshape(c, n).t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def calibrate(self, index: int, a: float, b: float) -> None:
        """Compose a Platt fit (a * logit + b) into class ``index``'s calibration."""
        with torch.no_grad():
            self.head.calib_bias[index] = a * self.head.calib_bias[index] + b
            self.head.calib_scale[index] *= a


def is_attrinet(model: Any) -> bool:
    return isinstance(model, AttriNet)


def random_attrinet_bundle(resolution: int = 32, seed: int = 0, width: int = 4, n_res: int = 1,
                           pathologies: Sequence[str] | None = None, device: str = "cpu"):
    """A small randomly initialised Attri-Net bundle for tests (deterministic per seed)."""
    from cfviewer.models.bundle import Bundle

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AttriNet(pathologies or PATHOLOGIES, resolution, width=width, n_res=n_res, n_fc=2, n_ones=4)
        with torch.no_grad():  # maps that differ per class and image, so tests see real signals
            model.generator.out.weight.normal_(0.0, 0.05)
            model.head.weight.normal_(0.0, 1.0)
    finally:
        torch.random.set_rng_state(state)
    return Bundle(model, None, resolution=resolution, meta={"source": "random_attrinet_bundle", "seed": seed},
                  device=device)
