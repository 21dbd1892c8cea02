"""SAGen: similar and adversarial generators (Charachon et al., "Combining Similarity and
Adversarial Learning to Generate Visual Explanation: Application to Medical Image
Classification", ICPR 2020; the text is in ``shared/papers/charachon2020-similar-adversarial-generators.txt``).

For a classifier f and an image x, two generators are trained on the classifier's training
images: the *similar* g_s (f(g_s(x)) = f(x), g_s(x) close to x) and the *adversarial* g_a
(f(g_a(x)) = 1 - f(x), g_a(x) close to g_s(x)); the explanation is |g_s(x) - g_a(x)| (section
III-A, eq. 3; the explainers are in :mod:`cfviewer.explain.sagen`).

Architecture: "Single AE" (section IV-C, Fig. 1 bottom)
-------------------------------------------------------
g_s and g_a share one autoencoder ("roughly" a U-Net, section IV-C) and differ by two
identical small CNNs at its end: 1 convolutional layer ("Single AE1") or 2 ("Single AE2").
:class:`SharedUNet` is a small U-Net (strided 3 x 3 convolutions down, nearest upsampling +
skip concatenation up, ReLU, no normalisation) giving ``widths[0]`` feature channels at full
resolution; each head maps them to one channel.

Choices where the paper is silent or binary:

* **One shared autoencoder, one (similar, adversarial) head pair per pathology.** The paper's
  method is binary (section III: a classifier output in [0, 1]; its multi-class extension,
  section III-C, eq. 10, is a Carlini-Wagner loss on a softmax-like argmax that does not fit
  independent multi-label outputs). The demo classifier predicts 6 independent pathologies,
  so every pathology k gets its own pair (g_s^k, g_a^k) on the shared autoencoder: each pair
  is exactly the paper's binary Single AE for output k, its weight-proximity term L_s,a
  (eq. 8) compares the two heads of *that* pair, and a pair costs one (AE1) or two (AE2)
  small convolutions. Conditioning one head pair on k instead would change the paper's
  architecture more (a class input it does not have) and couple the pathologies' L_s,a terms.
  A 6-pathology model has 12 heads.
* **Heads output a residual added to the input**, g(x) = x + h(AE(x)) in [0, 1] units, the
  last convolution of every head zero-initialised and the adversarial head of a pair
  initialised as a copy of the similar one: at step 0, g_s(x) = g_a(x) = x and L_s,a = 0. The
  paper only says "roughly UNet"; the residual makes g_s(x) ~ x (what L_d and the similar BCE
  ask for) reachable in a few hundred steps on a CPU budget instead of thousands.
* Images are in the classifier's units [-1024, 1024]; the generators work in [0, 1]
  ((x + 1024) / 2048, "normalized to [0, 1]", section IV-B) and hand the classifier
  their output clipped to [0, 1] and mapped back. The losses use the unclipped output.

Loss (section III-B, eq. 5-9), per sample x with its pathology k
-----------------------------------------------------------------
All norms are means over pixels in [0, 1] units (Keras-style ``mse`` / ``mae``):

    L_d   = a1 ||x - g_s||^2 + a2 ||x - g_a||^2 + a3 ||g_s - g_a||^2 + a4 ||g_s - g_a||_1   (eq. 6)
    L_fc  = b1 BCE(f'_k(x), f'_k(g_s(x))) + b2 BCE(1 - f'_k(x), f'_k(g_a(x)))           (eq. 7)
    L_s,a = gamma sum_j ||w_s^j - w_a^j||_2^2  over the parameter tensors j of pair k     (eq. 8)
    L_reg = lambda mean_i ||grad (g_s - g_a)_i||_2^2                                  (eq. 9)

Both read as squared norms (see :func:`weight_distance`): unsquared, they hold the two heads
together with a force that does not vanish at g_s = g_a, and no adversarial image crossed the
threshold in a 258-step run on the demo bundle.

BCE(target, prediction) as in eq. 7 (the first argument is the target). f' is the paper's
piecewise-linear map of the probability (section III-A: "In the case of a different threshold
one can apply for instance a piece-wise linear transformation to fc"): with the bundle's
operating threshold t_k, f'(p) = p / (2 t) for p <= t and 1/2 + (p - t) / (2 (1 - t)) above, so
t goes to 0.5 (:func:`threshold_map`). The BCE is computed from the classifier's logits
(:func:`threshold_log_map`), so a saturated probability (p = 1.000 in float32) still has a
gradient. The batch loss is the mean over samples of L_d + L_fc + L_reg + L_s,a(k): each pair's
data terms and weight term keep the paper's ratio whatever share of the batch it gets.

Presets = the rows of Table I (:data:`PRESETS`); the default is "Single AE1 (W,TV)": a = (1, 1,
1, 0.2), b1 = b2 = 0.001, gamma = 0.1, lambda = 0.2. The two "Duo AE" rows (two separate
U-Nets) are listed in :data:`DUO_PRESETS` but not implemented: :func:`get_preset` refuses them
("use a Single AE preset"). ``SAGenConfig.beta`` overrides b1 = b2 and ``SAGenConfig.alpha_l1``
overrides a4 (both recorded in sagen.json): the paper's values are the documented preset, which
its authors chose by trial and error for their ResNet50 on 224 px films (section IV-C, Table I);
the demo generators use b = 1 and a4 = 10 (below, and docs/experiments.md).

Training (section IV-C)
-----------------------
Adam, learning rate 1e-4, divided by 3 when the epoch's training loss has not decreased for 3
epochs (the paper's rule; it does not say which loss: the training loss here), batch size 8
(Single AE), the classifier's own augmentation (:func:`cfviewer.models.data.augment` with the
bundle's ``augment`` settings), on phantoms rendered as the bundle's training images
(phantom options, render scale; the bundle's training seed when it records one, so the images
are a prefix of the classifier's training set). The classifier is a frozen copy (eval mode,
``requires_grad_(False)``). Each sample gets a pathology k (:func:`choose_heads`): with
probability ``positive_share`` (0.5) one the classifier calls positive on it (when there is
one), else any pathology uniformly; the paper's binary training set was 40 % positive, while
a single pathology of a multi-label set is positive far less often, and an adversarial head
that never sees positives never learns to remove a finding.

Every step is deterministic given (seed, epoch, step) (shuffling, augmentation, head choice),
so a resumed run ends with the same weights as an uninterrupted one. Checkpoints go to the
work directory every ``checkpoint_every`` steps, at epoch ends, on Ctrl-C and when the
``max_minutes`` budget is spent (the run then stops at that step boundary and still saves its
generators, marked ``"stopped": "max_minutes"``; ``--resume`` continues it). A finished run
can be trained further with other settings (``--continue``, ``SAGenConfig.continue_from`` = the
sha256 of the bundle's sagen.pt): the new run starts from those weights with a fresh optimiser,
and sagen.json keeps the earlier runs' configs, histories and held-out quality
(``training.continued_from``, a chain). A Single AE2 preset continues one-layer heads as
two-layer heads (:func:`deepened_heads`: the added first layer is the identity, so the run
starts from exactly the generators it continues). The demo bundle's generators were trained this way: 3
epochs at beta 0.1, 5 at beta 0.3, 5 at beta 1.0, then (all at beta 1.0, ``--alpha-l1``) 8
epochs with the L1 weight a4 raised to 5 and 2 with a4 = 10, the last 4 at lr 1.5e-4
(sagen.json). The larger a4 prices every changed pixel, so the adversarial change became local
(docs/experiments.md: held-out adversarial success 57.5 -> 70.0 %, share of the
counterfactual's change inside the finding 0.11 -> 0.25).

Files, beside the bundle: ``DIR/sagen.pt`` (state dict) + ``DIR/sagen.json`` (config, preset,
history, seconds, held-out quality from :func:`evaluate_sagen`, and the identity of the
classifier it was trained against, :func:`classifier_identity`: a generator trained for
another classifier or other thresholds is refused by :func:`load_sagen`). Note that
:func:`cfviewer.models.bundle.bundle_identity` hashes every file of the folder, so writing
these files changes the bundle's identity (a cohort sampled before them no longer matches).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cfviewer.device import runtime_record
from cfviewer.errors import CfviewerError
from cfviewer.models.bundle import cached_companion, companion_command, companion_dir, read_companion_doc

FORMAT = "cfviewer-sagen"
VERSION = 1
SAGEN_PT = "sagen.pt"
SAGEN_JSON = "sagen.json"
CHECKPOINT = "sagen_checkpoint.pt"
PIXEL_MIN, PIXEL_MAX = -1024.0, 1024.0
SAGEN_TAG = 0x736167656E  # "sagen": the seed streams of its own phantoms
TV_EPS = 1e-12
FIX_COMMAND = "cfviewer train-explainer sagen --bundle {dir}"


class SAGenError(CfviewerError):
    """A SAGen configuration, file or generator is unusable."""


class SAGenMissingError(SAGenError):
    """The bundle has no trained SAGen generators."""


class SAGenStaleError(SAGenError):
    """The stored generators were trained against another classifier (or other thresholds)."""


# ---------------------------------------------------------------------- presets (Table I)
@dataclass(frozen=True)
class Preset:
    """One row of Table I: the head depth (AE1 / AE2) and the weights of eq. 6-9."""

    name: str
    head_layers: int
    alpha: tuple[float, float, float, float]
    beta: tuple[float, float]
    gamma: float
    lam: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "head_layers": self.head_layers, "alpha": list(self.alpha),
                "beta": list(self.beta), "gamma": self.gamma, "lambda": self.lam}


PRESETS: dict[str, Preset] = {
    p.name: p for p in (
        Preset("Single AE1 (TV)", 1, (1.0, 1.0, 1.0, 0.0), (0.001, 0.001), 0.0, 0.2),
        Preset("Single AE1 (W)", 1, (3.0, 1.0, 1.0, 0.2), (0.001, 0.001), 0.1, 0.0),
        Preset("Single AE1 (W,TV)", 1, (1.0, 1.0, 1.0, 0.2), (0.001, 0.001), 0.1, 0.2),
        Preset("Single AE2 (W)", 2, (3.0, 1.0, 1.0, 0.2), (0.001, 0.001), 0.2, 0.0),
        Preset("Single AE2 (W,TV)", 2, (3.0, 1.0, 1.0, 0.2), (0.001, 0.001), 0.2, 0.2),
    )
}
"""Table I's "Single AE" rows (section IV-C)."""

DUO_PRESETS: dict[str, Preset] = {
    p.name: p for p in (
        Preset("Duo AE (TV)", 0, (1.0, 1.0, 1.0, 0.0), (0.001, 0.001), 0.0, 0.2),
        Preset("Duo AE (W,TV)", 0, (1.0, 1.0, 1.0, 0.0), (0.001, 0.001), 0.1, 0.2),
    )
}
"""Table I's "Duo AE" rows (two separate U-Nets): listed, not implemented."""

DEFAULT_PRESET = "Single AE1 (W,TV)"


def _slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9]", "", name.lower()).replace("duoae", "duo")
    return s[len("single"):] if s.startswith("single") else s


def preset_names() -> list[str]:
    """The accepted preset names (Table I spelling; ``ae1-w-tv`` style slugs also work)."""
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """The Table I row called ``name`` ("Single AE1 (W,TV)", or a slug such as ``ae1-w-tv``)."""
    slug = _slug(str(name))
    for p in PRESETS.values():
        if _slug(p.name) == slug:
            return p
    for p in DUO_PRESETS.values():
        if _slug(p.name) == slug:
            raise SAGenError(
                f"SAGen preset {p.name!r} (two separate U-Nets, 'Duo AE') is not implemented: use a "
                f"Single AE preset ({', '.join(PRESETS)}); the paper's Table VI-VII rank Single AE above Duo AE")
    raise SAGenError(f"unknown SAGen preset {name!r}; choose one of: "
                     + ", ".join(f"{p!r} ({_slug_display(p)})" for p in PRESETS))


def _slug_display(name: str) -> str:
    s = name.lower().replace("single ", "").replace("(", "").replace(")", "").replace(",", "-")
    return re.sub(r"[^a-z0-9]+", "-", s).strip("-")


# ---------------------------------------------------------------------- architecture
class SharedUNet(nn.Module):
    """The shared autoencoder of "Single AE" (a small U-Net): input N x 1 x R x R in [0, 1],
    output ``widths[0]`` feature channels at full resolution. Level i > 0: a stride-2 3 x 3
    convolution + a 3 x 3 convolution (ReLU); the way up: nearest upsampling to the skip's
    size, concatenation with the skip, a 3 x 3 convolution (ReLU)."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise SAGenError(f"SAGen widths {widths}: give one or more positive channel counts")
        self.inc = nn.Sequential(nn.Conv2d(1, widths[0], 3, padding=1), nn.ReLU())
        self.downs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i - 1], widths[i], 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(widths[i], widths[i], 3, padding=1), nn.ReLU())
            for i in range(1, len(widths))
        )
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i] + widths[i - 1], widths[i - 1], 3, padding=1), nn.ReLU())
            for i in range(len(widths) - 1, 0, -1)
        )

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x01)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.ups:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = up(torch.cat([h, skip], 1))
        return h


def make_head(width: int, layers: int) -> nn.Sequential:
    """``layers`` 3 x 3 convolutions (ReLU between them) from ``width`` channels to 1; the last
    is zero-initialised, so a fresh head outputs a zero residual."""
    mods: list[nn.Module] = []
    for _ in range(layers - 1):
        mods += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
    last = nn.Conv2d(width, 1, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    mods.append(last)
    return nn.Sequential(*mods)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Classifier units [-1024, 1024] -> [0, 1]."""
    return (x - PIXEL_MIN) / (PIXEL_MAX - PIXEL_MIN)


def from_unit(g01: torch.Tensor) -> torch.Tensor:
    """[0, 1] (clipped) -> classifier units [-1024, 1024]."""
    return g01.clamp(0.0, 1.0) * (PIXEL_MAX - PIXEL_MIN) + PIXEL_MIN


class SAGen(nn.Module):
    """Single AE_i generators: one :class:`SharedUNet` and, per pathology k, a similar and an
    adversarial head of ``head_layers`` convolutions (module docstring).

    ``forward(x, k)`` takes N x 1 x R x R images in [-1024, 1024] and N head indices (the
    pathology of each row) and returns (g_s(x), g_a(x)) in the same units, clipped."""

    def __init__(self, pathologies: Sequence[str], widths: Sequence[int] = (16, 32, 64),
                 head_layers: int = 1):
        super().__init__()
        if int(head_layers) not in (1, 2):
            raise SAGenError(f"SAGen head_layers {head_layers}: the paper's Single AE1 / AE2 have 1 or 2")
        if not pathologies:
            raise SAGenError("SAGen: no pathologies")
        self.pathologies = list(pathologies)
        self.widths = [int(w) for w in widths]
        self.head_layers = int(head_layers)
        self.shared = SharedUNet(self.widths)
        w0 = self.widths[0]
        self.similar = nn.ModuleList(make_head(w0, self.head_layers) for _ in self.pathologies)
        self.adversarial = nn.ModuleList(make_head(w0, self.head_layers) for _ in self.pathologies)
        for s, a in zip(self.similar, self.adversarial):
            a.load_state_dict(s.state_dict())  # L_s,a = 0 at the start

    def config(self) -> dict[str, Any]:
        return {"pathologies": list(self.pathologies), "widths": list(self.widths),
                "head_layers": self.head_layers}

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        return self.shared(x01)

    def heads01(self, feats: torch.Tensor, x01: torch.Tensor, k: torch.Tensor | Sequence[int] | int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(g_s, g_a) in [0, 1] units, unclipped, from the shared features: row i through the
        head pair of pathology k[i]."""
        k = self._index(k, len(x01), x01.device)
        rs: torch.Tensor | None = None
        ra: torch.Tensor | None = None
        for kk in sorted(set(k.tolist())):
            sel = (k == kk).nonzero().squeeze(1)
            hs = self.similar[kk](feats.index_select(0, sel))
            ha = self.adversarial[kk](feats.index_select(0, sel))
            if rs is None:
                rs = hs.new_zeros((len(x01), *hs.shape[1:]))
                ra = hs.new_zeros((len(x01), *hs.shape[1:]))
            rs = rs.index_copy(0, sel, hs)
            ra = ra.index_copy(0, sel, ha)
        assert rs is not None and ra is not None
        return x01 + rs, x01 + ra

    def forward01(self, x01: torch.Tensor, k: torch.Tensor | Sequence[int] | int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads01(self.features(x01), x01, k)

    def forward(self, x: torch.Tensor, k: torch.Tensor | Sequence[int] | int) -> tuple[torch.Tensor, torch.Tensor]:
        gs, ga = self.forward01(to_unit(x), k)
        return from_unit(gs), from_unit(ga)

    def head_pair_parameters(self, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(self.similar[k].parameters(), self.adversarial[k].parameters()))

    def head_distance(self, k: int) -> torch.Tensor:
        """sum_j ||w_s^j - w_a^j||_2 over the parameter tensors of pair k (eq. 8 without gamma)."""
        return weight_distance(self.head_pair_parameters(k))

    def _index(self, k: Any, n: int, device: torch.device) -> torch.Tensor:
        if isinstance(k, int):
            k = [k] * n
        t = torch.as_tensor(k, dtype=torch.long).reshape(-1).cpu()
        if len(t) != n:
            raise SAGenError(f"SAGen: {n} images but {len(t)} head indices")
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= len(self.pathologies)):
            raise SAGenError(f"SAGen: head index out of range 0..{len(self.pathologies) - 1}: {t.tolist()}")
        return t


# ---------------------------------------------------------------------- losses (eq. 6-9)
def threshold_map(p: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """f'(p): the piecewise-linear map sending the operating threshold t to 0.5 (section III-A):
    p / (2 t) for p <= t, 1/2 + (p - t) / (2 (1 - t)) above; 0 -> 0, t -> 0.5, 1 -> 1."""
    t = torch.as_tensor(t, dtype=p.dtype, device=p.device)
    return torch.where(p <= t, p / (2 * t), 0.5 + (p - t) / (2 * (1 - t)))


def threshold_log_map(z: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log f'(p), log(1 - f'(p))) for p = sigmoid(z), computed from the logit z so that neither
    vanishes in float32 when p saturates (both branches finite everywhere, so ``torch.where``
    passes finite gradients)."""
    t = torch.as_tensor(t, dtype=z.dtype, device=z.device)
    p = torch.sigmoid(z)
    q = torch.sigmoid(-z)  # 1 - p, accurate near p = 1
    low = p <= t
    # p <= t: f' = p / (2t)
    log_q_low = F.logsigmoid(z) - torch.log(2 * t)
    log_1mq_low = torch.log1p(-torch.minimum(p, t) / (2 * t))
    # p > t: 1 - f' = (1 - p) / (2 (1 - t))
    log_1mq_high = F.logsigmoid(-z) - torch.log(2 * (1 - t))
    log_q_high = torch.log1p(-torch.minimum(q, 1 - t) / (2 * (1 - t)))
    return torch.where(low, log_q_low, log_q_high), torch.where(low, log_1mq_low, log_1mq_high)


def bce_on_map(target: torch.Tensor, z: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """BCE(target, f'(sigmoid(z))) per element: -(y log f' + (1 - y) log(1 - f'))."""
    lq, l1q = threshold_log_map(z, t)
    return -(target * lq + (1 - target) * l1q)


def similarity_loss(x01: torch.Tensor, gs01: torch.Tensor, ga01: torch.Tensor,
                    alpha: Sequence[float]) -> torch.Tensor:
    """L_d (eq. 6) per sample: means over pixels in [0, 1] units."""
    a1, a2, a3, a4 = (float(a) for a in alpha)
    dims = tuple(range(1, x01.ndim))
    d = gs01 - ga01
    return (a1 * (x01 - gs01).pow(2).mean(dims) + a2 * (x01 - ga01).pow(2).mean(dims)
            + a3 * d.pow(2).mean(dims) + a4 * d.abs().mean(dims))


def classification_loss(z_x: torch.Tensor, z_s: torch.Tensor, z_a: torch.Tensor,
                        t: torch.Tensor | float, beta: Sequence[float]) -> torch.Tensor:
    """L_fc (eq. 7) per sample from the logits of the explained output on x, g_s(x), g_a(x):
    b1 BCE(f'(x), f'(g_s)) + b2 BCE(1 - f'(x), f'(g_a)); f'(x) is a constant target."""
    b1, b2 = (float(b) for b in beta)
    target = threshold_map(torch.sigmoid(z_x.detach()), t)
    return b1 * bce_on_map(target, z_s, t) + b2 * bce_on_map(1 - target, z_a, t)


def weight_distance(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """sum_j ||w_s^j - w_a^j||_2^2 (eq. 8 without gamma). Read as the *squared* norm (the
    extracted text's trailing 2 can be either): the plain norm has a subgradient of constant
    size gamma at w_s = w_a, which with b = 0.001 outweighs the adversarial BCE and holds the
    heads together -- in a 258-step run on the demo bundle no adversarial image crossed the
    threshold -- while the squared norm is a pull that vanishes at equality, as weight decay."""
    terms = [(ws - wa).pow(2).sum() for ws, wa in pairs]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def total_variation(d: torch.Tensor, eps: float = TV_EPS) -> torch.Tensor:
    """mean_i ||grad d_i||_2^2 per sample (eq. 9 without lambda): forward differences on the
    (H - 1) x (W - 1) pixels that have both. Squared for the reason given in
    :func:`weight_distance` (the unsquared TV pulls d = g_s - g_a to zero with a force that does
    not shrink as d does). ``eps`` is kept for the signature and unused."""
    dx = d[..., :-1, 1:] - d[..., :-1, :-1]
    dy = d[..., 1:, :-1] - d[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2)).mean(tuple(range(1, d.ndim)))


def classifier_logits(clf: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classifier's logits (``.logits`` when it has one; else logit of the clamped
    probability)."""
    fn = getattr(clf, "logits", None)
    if callable(fn):
        return fn(x)
    p = clf(x).clamp(1e-7, 1 - 1e-7)
    return torch.log(p) - torch.log1p(-p)


def sagen_loss(gen: SAGen, clf: nn.Module, x: torch.Tensor, k: torch.Tensor, thresholds: torch.Tensor,
               preset: Preset, beta: float | None = None, z_x: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The batch loss (mean over samples of L_d + L_fc + L_reg + L_s,a(k_i), module docstring)
    and its per-sample terms (plus the explained logits on x, g_s, g_a)."""
    k = k.to(x.device)
    rows = torch.arange(len(x), device=x.device)
    if z_x is None:
        with torch.no_grad():
            z_x = classifier_logits(clf, x)
    zx = z_x[rows, k]
    x01 = to_unit(x)
    gs01, ga01 = gen.forward01(x01, k.cpu())
    z = classifier_logits(clf, torch.cat([from_unit(gs01), from_unit(ga01)]))
    zs, za = z[: len(x)][rows, k], z[len(x):][rows, k]
    t = thresholds.to(x.device)[k]
    b = preset.beta if beta is None else (float(beta), float(beta))
    ld = similarity_loss(x01, gs01, ga01, preset.alpha)
    lfc = classification_loss(zx, zs, za, t, b)
    lreg = preset.lam * total_variation(gs01 - ga01)
    dist = {kk: gen.head_distance(kk) for kk in sorted(set(k.tolist()))}
    lsa = preset.gamma * torch.stack([dist[kk] for kk in k.tolist()]).to(x.device)
    total = (ld + lfc + lreg + lsa).mean()
    terms = {"L_d": ld, "L_fc": lfc, "L_reg": lreg, "L_sa": lsa, "z_x": zx.detach(),
             "z_s": zs.detach(), "z_a": za.detach(), "threshold": t}
    return total, terms


def choose_heads(probs: torch.Tensor, thresholds: torch.Tensor, generator: torch.Generator,
                 positive_share: float) -> torch.Tensor:
    """Pathology of each sample (module docstring): with probability ``positive_share`` one the
    classifier calls positive on it (when any), else uniform over all. Deterministic given the
    generator (CPU draws)."""
    probs = probs.detach().float().cpu()
    n, c = probs.shape
    pos = probs >= thresholds.float().cpu().view(1, -1)
    u = torch.rand(n, generator=generator)
    use_pos = (u < positive_share) & pos.any(1)
    weights = torch.where(use_pos.view(-1, 1), pos.float(), torch.ones(n, c))
    return torch.multinomial(weights, 1, generator=generator).view(-1)


# ---------------------------------------------------------------------- identity / files
def classifier_identity(bundle: Any) -> str:
    """What a generator is trained against: a hash of the classifier's class and weights, the
    pathologies, thresholds, resolution and input transform (the autoencoder plays no part)."""
    clf = bundle.classifier
    h = hashlib.sha256()
    head = {"class": f"{type(clf).__module__}:{type(clf).__qualname__}",
            "pathologies": list(bundle.pathologies),
            "thresholds": {p: round(float(bundle.thresholds[p]), 12) for p in bundle.pathologies},
            "resolution": int(bundle.resolution),
            "input_transform": getattr(bundle, "input_transform", "")}
    h.update(json.dumps(head, sort_keys=True).encode())
    for name, t in sorted(clf.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return "clf-" + h.hexdigest()[:16]


def _fix(bundle: Any) -> str:
    return companion_command(FIX_COMMAND, bundle)


def has_sagen(bundle: Any) -> bool:
    """Whether ``bundle`` has SAGen generators (attached, or sagen.pt in its folder); they may
    still be stale (:func:`load_sagen` checks)."""
    if getattr(bundle, "_sagen", None) is not None:
        return True
    d = companion_dir(bundle)
    return d is not None and (d / SAGEN_PT).is_file() and (d / SAGEN_JSON).is_file()


def attach_sagen(bundle: Any, gen: SAGen, doc: Mapping[str, Any] | None = None) -> SAGen:
    """Attach generators to an in-memory bundle (what :func:`load_sagen` returns afterwards);
    they must fit its pathologies. ``doc`` (sagen.json's content) defaults to a minimal one
    naming this classifier."""
    if list(gen.pathologies) != list(bundle.pathologies):
        raise SAGenError(f"SAGen generators for {gen.pathologies} do not fit a classifier predicting "
                         f"{bundle.pathologies}")
    gen = gen.to(bundle.device).eval().requires_grad_(False)
    doc = dict(doc or {"format": FORMAT, "version": VERSION,
                       "model": {"config": gen.config()},
                       "classifier": {"identity": classifier_identity(bundle)}})
    bundle._sagen = gen
    bundle._sagen_doc = doc
    return gen


def detach_sagen(bundle: Any) -> None:
    """Forget the generators cached on ``bundle`` (the next :func:`load_sagen` reads the files)."""
    for name in ("_sagen", "_sagen_doc"):
        if hasattr(bundle, name):
            delattr(bundle, name)


def sagen_doc(bundle: Any) -> dict[str, Any]:
    """sagen.json's content for the generators :func:`load_sagen` gives."""
    load_sagen(bundle)
    return dict(getattr(bundle, "_sagen_doc", {}) or {})


def load_sagen(bundle: Any) -> SAGen:
    """The bundle's SAGen generators, loaded once from ``DIR/sagen.pt`` + ``DIR/sagen.json``
    and cached on the bundle object (on its device, eval mode, frozen).

    Raises :class:`SAGenMissingError` (naming the folder and the command that trains them)
    when there are none, :class:`SAGenStaleError` when they were trained against another
    classifier or other thresholds, :class:`SAGenError` when the files are unusable. The
    check is made when the files are read: generators cached on a bundle (or on a deep copy
    of it, e.g. a cascading-randomisation copy) are used as they are."""
    gen = cached_companion(bundle, "_sagen")
    if gen is not None:
        return gen
    pt, doc = read_companion_doc(
        bundle, SAGEN_PT, SAGEN_JSON, FORMAT, VERSION, fix=_fix(bundle),
        in_memory="this bundle has no SAGen generators (it was built in memory: train them with "
                  "cfviewer.models.sagen.train_sagen or attach_sagen, or load a bundle folder that has "
                  f"{SAGEN_PT}); for a saved bundle run `{FIX_COMMAND.format(dir='DIR')}`",
        missing=f"the bundle {{d}} has no trained SAGen generators ({SAGEN_PT} + {SAGEN_JSON} are missing); "
                f"train them with `{_fix(bundle)}`",
        missing_error=SAGenMissingError, error=SAGenError)
    want = classifier_identity(bundle)
    got = (doc.get("classifier") or {}).get("identity")
    if got != want:
        raise SAGenStaleError(
            f"the SAGen generators in {pt} were trained against another classifier or other "
            f"thresholds (identity {got}, this bundle's classifier is {want}); retrain them with "
            f"`{_fix(bundle)}`")
    try:
        gen = SAGen(**(doc.get("model") or {}).get("config", {}))
        state = torch.load(pt, map_location="cpu", weights_only=True)
        gen.load_state_dict(state)
    except SAGenError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise SAGenError(f"{pt} does not fit {pt.with_name(SAGEN_JSON)} ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                         f"retrain with `{_fix(bundle)}`") from None
    return attach_sagen(bundle, gen, doc)


def save_sagen(gen: SAGen, directory: str | Path, doc: Mapping[str, Any]) -> Path:
    """Write ``sagen.pt`` (state dict) and ``sagen.json`` (``doc``) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in gen.state_dict().items()}
    tmp = directory / (SAGEN_PT + ".tmp")
    torch.save(state, tmp)
    tmp.replace(directory / SAGEN_PT)
    tmpj = directory / (SAGEN_JSON + ".tmp")
    tmpj.write_text(json.dumps(_jsonable(doc), indent=2) + "\n")
    tmpj.replace(directory / SAGEN_JSON)
    return directory / SAGEN_PT


def random_sagen(bundle: Any, seed: int = 0, widths: Sequence[int] = (8, 16), head_layers: int = 1,
                 scale: float = 0.05) -> SAGen:
    """Untrained generators with small random head outputs (g_s != g_a), attached to
    ``bundle``: for tests, like :func:`cfviewer.models.bundle.random_bundle`."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        gen = SAGen(bundle.pathologies, widths=widths, head_layers=head_layers)
        with torch.no_grad():
            for s, a in zip(gen.similar, gen.adversarial):
                for head, amp in ((s, 0.2 * scale), (a, scale)):
                    last = head[-1]
                    last.weight.normal_(0.0, amp)
                    last.bias.normal_(0.0, amp / 10)
    finally:
        torch.random.set_rng_state(state)
    return attach_sagen(bundle, gen)


# ---------------------------------------------------------------------- training
@dataclass
class SAGenConfig:
    """Everything that determines the trained generators (recorded in sagen.json)."""

    preset: str = DEFAULT_PRESET
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    epochs: int = 10
    n_train: int = 2000
    n_val: int = 200
    batch_size: int = 8            # section IV-C: 8 for Single AE
    lr: float = 1e-4               # section IV-C
    lr_factor: float = 1.0 / 3.0   # section IV-C: "reduce the learning rate by 3 ..."
    lr_patience: int = 3           # "... each time the loss does not decrease after 3 epochs"
    beta: float | None = None      # override b1 = b2 of the preset (None: the paper's 0.001)
    alpha_l1: float | None = None  # override a4, the L1 weight on g_s - g_a in L_d (None: the preset's 0.2)
    positive_share: float = 0.5
    augment: bool = True
    seed: int = 0
    checkpoint_every: int = 100
    max_minutes: float | None = None
    data_jobs: int = 1
    continue_from: str | None = None  # sha256 of the bundle's sagen.pt this run starts from (None: fresh init)

    RESUMABLE_KEYS = ("epochs", "max_minutes", "checkpoint_every", "n_val", "data_jobs", "continue_from")
    """Keys a resumed run may change (everything else must match the checkpoint; a resumed run
    starts from the checkpoint's weights, so where its first session started does not matter)."""

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "SAGenConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise SAGenError(f"SAGen config: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
        cfg = cls(**dict(doc))
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        get_preset(self.preset)
        if self.epochs < 0 or self.batch_size < 1 or self.n_train < 1 or self.n_val < 0:
            raise SAGenError("SAGen config: epochs >= 0, batch_size >= 1, n_train >= 1 and n_val >= 0 are required")
        if not self.lr > 0 or not 0 < self.lr_factor < 1 or self.lr_patience < 0:
            raise SAGenError("SAGen config: lr > 0, 0 < lr_factor < 1 and lr_patience >= 0 are required")
        if self.beta is not None and not self.beta >= 0:
            raise SAGenError(f"SAGen config: beta {self.beta} must be >= 0")
        if self.alpha_l1 is not None and not self.alpha_l1 >= 0:
            raise SAGenError(f"SAGen config: alpha_l1 {self.alpha_l1} must be >= 0")
        if not 0.0 <= self.positive_share <= 1.0:
            raise SAGenError(f"SAGen config: positive_share {self.positive_share} must be in [0, 1]")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise SAGenError(f"SAGen config: max_minutes {self.max_minutes} must be > 0")
        SharedUNet(self.widths)

    def fingerprint(self, classifier: str) -> str:
        d = {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE_KEYS}
        d["preset"] = get_preset(self.preset).name
        d["classifier"] = classifier
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


class SAGenStopped(Exception):
    """Raised when ``stop_after_steps`` is reached (a checkpoint has been written): tests."""


@dataclass
class SAGenResult:
    generator: SAGen
    doc: dict[str, Any]
    path: Path | None


def step_seed(seed: int, epoch: int, step: int) -> int:
    """The seed of one step (or, with step = -1, of an epoch's shuffle)."""
    ss = np.random.SeedSequence([int(seed), SAGEN_TAG, int(epoch), int(step) + 1])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def training_data_seed(bundle: Any, seed: int) -> tuple[int, str]:
    """(dataset seed, where it comes from): the bundle's recorded training seed (its training
    images, as the paper trains the generators on the classifier's training set), else one of
    SAGen's own streams."""
    tr = (getattr(bundle, "meta", {}) or {}).get("training") or {}
    ds = tr.get("data_seeds") if isinstance(tr, dict) else None
    if isinstance(ds, dict) and isinstance(ds.get("train"), int):
        return int(ds["train"]), "bundle training seed (meta.training.data_seeds.train)"
    s = int(np.random.SeedSequence([int(seed), SAGEN_TAG, 0]).generate_state(1, dtype=np.uint32)[0])
    return s, "SAGen stream 0 of the seed (the bundle records no training seed)"


def validation_seed(seed: int) -> int:
    """The held-out dataset seed of :func:`evaluate_sagen` (SAGen stream 1, disjoint from every
    training stream)."""
    return int(np.random.SeedSequence([int(seed), SAGEN_TAG, 1]).generate_state(1, dtype=np.uint32)[0])


def _bundle_training_config(bundle: Any) -> dict[str, Any]:
    tr = (getattr(bundle, "meta", {}) or {}).get("training") or {}
    cfg = tr.get("config") if isinstance(tr, dict) else None
    return dict(cfg) if isinstance(cfg, dict) else {}


def bundle_phantoms(bundle: Any, n: int, seed: int, *, cache_dir: str | Path | None = None,
                    progress: bool = False, desc: str = "phantoms", n_jobs: int = 1):
    """n phantoms (dataset seed ``seed``) rendered as the bundle's training images were
    (:class:`cfviewer.evaluation.cases.PhantomSource` reads the same settings)."""
    from cfviewer.models.data import phantom_data

    cfg = _bundle_training_config(bundle)
    return phantom_data(int(n), int(seed), int(bundle.resolution), dict(cfg.get("phantoms") or {}),
                        cache_dir=cache_dir, progress=progress, desc=desc,
                        render_scale=int(cfg.get("render_scale", 1) or 1), n_jobs=n_jobs)


def default_work_dir(bundle_dir: str | Path | None) -> Path:
    from cfviewer.paths import work_cache_dir

    return work_cache_dir("sagen", bundle_dir)


def _load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise SAGenError(f"checkpoint {path} is unreadable ({exc}); delete it or run without --resume") from None
    if state.get("fingerprint") != fingerprint:
        raise SAGenError(
            f"checkpoint {path} belongs to another SAGen configuration or classifier; run without "
            "--resume to start over (or pass the options it was made with: only --epochs and "
            "--max-minutes may change)")
    return state


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from cfviewer.files import save_torch_atomic

    save_torch_atomic(state, path)


def train_sagen(
    bundle: Any,
    config: SAGenConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
    data: Any = None,
    log: Callable[[str], None] = print,
    save: bool = True,
) -> SAGenResult:
    """Train SAGen generators for ``bundle`` (module docstring), evaluate them on held-out
    phantoms (:func:`evaluate_sagen`, ``config.n_val`` images), save them to ``out_dir``
    (default: the bundle's folder) and attach them to ``bundle``.

    ``data`` (a :class:`~cfviewer.models.data.TrainingData`) replaces the phantoms (tests);
    ``stop_after_steps`` saves a checkpoint and raises :class:`SAGenStopped` at that global
    step (a simulated interruption)."""
    config = config or SAGenConfig()
    config.validate()
    preset = effective_preset(config)
    dev = bundle.device
    bdir = companion_dir(bundle)
    out = Path(out_dir) if out_dir is not None else bdir
    if save and out is None:
        raise SAGenError("train_sagen: the bundle was built in memory; pass out_dir=... (or save=False)")
    work = Path(work_dir) if work_dir is not None else default_work_dir(out or bdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / CHECKPOINT
    ident = classifier_identity(bundle)
    fp = config.fingerprint(ident)
    saved = _load_checkpoint(ckpt_path, fp) if resume else None
    if resume and saved is None:
        log(f"no SAGen checkpoint in {work}: starting from the beginning")
    if not resume and ckpt_path.exists():
        ckpt_path.unlink()
    session_t0 = time.perf_counter()

    # ---- data
    t = time.perf_counter()
    data_seed, data_seed_from = training_data_seed(bundle, config.seed)
    if data is None:
        data = bundle_phantoms(bundle, config.n_train, data_seed, cache_dir=work, progress=progress,
                               desc="SAGen training phantoms", n_jobs=config.data_jobs)
        data_from = f"{config.n_train} phantoms, dataset seed {data_seed} ({data_seed_from})"
    else:
        data_from = f"{len(data)} images given to train_sagen"
    data_seconds = time.perf_counter() - t
    if data.resolution != bundle.resolution:
        raise SAGenError(f"SAGen training data is {data.resolution} px but the bundle's input is "
                         f"{bundle.resolution} px")
    aug_kwargs = dict(_bundle_training_config(bundle).get("augment") or {})

    # ---- models
    clf = copy.deepcopy(bundle.classifier).to(dev).eval().requires_grad_(False)
    thresholds = torch.as_tensor(bundle.threshold_array(), dtype=torch.float32)
    torch.manual_seed(int(np.random.SeedSequence([int(config.seed), SAGEN_TAG, 2]).generate_state(1)[0]))  # init
    gen = SAGen(bundle.pathologies, widths=config.widths, head_layers=preset.head_layers).to(dev)
    previous = _continued_from(bundle, gen, config) if config.continue_from and saved is None else None
    opt = torch.optim.Adam(gen.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=config.lr_factor,
                                                       patience=config.lr_patience)
    n = len(data)
    bs = min(config.batch_size, n)
    steps_per_epoch = n // bs
    epoch, step_in_epoch, history, seconds_before = 0, 0, [], 0.0
    running: dict[str, list[float]] = {}
    if saved is not None:
        gen.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        epoch, step_in_epoch = int(saved["epoch"]), int(saved["step_in_epoch"])
        history = list(saved["history"])
        running = {k: list(v) for k, v in dict(saved.get("running") or {}).items()}
        seconds_before = float(saved["seconds"])
        previous = saved.get("previous")
    loop_t0 = time.perf_counter()

    def state() -> dict[str, Any]:
        return {"fingerprint": fp, "model": gen.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
                "history": history, "running": running, "previous": previous,
                "seconds": seconds_before + time.perf_counter() - loop_t0}

    stopped: str | None = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch * config.epochs, initial=epoch * steps_per_epoch + step_in_epoch,
                   desc="SAGen", unit="step", dynamic_ncols=True, miniters=1, mininterval=1.0)
    budget = None if config.max_minutes is None else 60.0 * float(config.max_minutes)
    from cfviewer.models.data import augment

    try:
        while epoch < config.epochs and stopped is None:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(step_seed(config.seed, epoch, -1)))
            gen.train()
            while step_in_epoch < steps_per_epoch:
                gstep = epoch * steps_per_epoch + step_in_epoch
                if stop_after_steps is not None and gstep >= stop_after_steps:
                    _save_checkpoint(ckpt_path, state())
                    raise SAGenStopped(f"SAGen: stopped after {gstep} steps")
                if budget is not None and time.perf_counter() - session_t0 >= budget:
                    stopped = "max_minutes"
                    break
                s = step_seed(config.seed, epoch, step_in_epoch)
                g = torch.Generator().manual_seed(s)
                torch.manual_seed(s)
                idx = perm[step_in_epoch * bs:(step_in_epoch + 1) * bs]
                x = data.images[idx].to(device=dev, dtype=torch.float32)[:, None]
                if config.augment:
                    x = augment(x, g, **aug_kwargs)
                with torch.no_grad():
                    z_x = classifier_logits(clf, x)
                k = choose_heads(torch.sigmoid(z_x), thresholds, g, config.positive_share)
                loss, terms = sagen_loss(gen, clf, x, k, thresholds, preset, config.beta, z_x=z_x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _accumulate(running, float(loss.detach()), terms)
                step_in_epoch += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(running['loss'][-50:]):.5f}",
                                    adv=f"{np.mean(running['adv_success'][-50:]):.2f}")
                if config.checkpoint_every and (gstep + 1) % config.checkpoint_every == 0:
                    _save_checkpoint(ckpt_path, state())
            if stopped is not None:
                break
            record = {"epoch": epoch + 1, "lr": float(opt.param_groups[0]["lr"])}
            record.update({k: float(np.mean(v)) if v else float("nan") for k, v in running.items()})
            record["seconds"] = seconds_before + time.perf_counter() - loop_t0
            sched.step(record.get("loss", float("nan")))
            history.append(record)
            running = {}
            line = (f"SAGen epoch {epoch + 1}/{config.epochs}: loss={record.get('loss', float('nan')):.5f} "
                    f"adversarial success={record.get('adv_success', float('nan')):.2f} "
                    f"similar keeps={record.get('sim_keeps', float('nan')):.2f} ({record['seconds']:.0f} s)")
            if bar is not None:
                bar.write(line)
            else:  # a log without progress bars still shows each epoch
                log(line)
            epoch += 1
            step_in_epoch = 0
            _save_checkpoint(ckpt_path, state())
    except KeyboardInterrupt:
        _save_checkpoint(ckpt_path, state())
        raise
    finally:
        if bar is not None:
            bar.close()
    _save_checkpoint(ckpt_path, state())
    if stopped:
        log(f"SAGen: the {config.max_minutes:g}-minute budget is spent at epoch {epoch + 1}, step "
            f"{step_in_epoch}: saving the generators as they are (continue with --resume)")
    train_seconds = seconds_before + time.perf_counter() - loop_t0
    gen.eval()
    attach_sagen(bundle, gen, {"format": FORMAT, "version": VERSION, "model": {"config": gen.config()},
                               "classifier": {"identity": ident}})
    gen = bundle._sagen

    # ---- held-out quality
    t = time.perf_counter()
    quality = evaluate_sagen(bundle, n=config.n_val, seed=config.seed, cache_dir=work) if config.n_val else None
    eval_seconds = time.perf_counter() - t
    clf_file = bdir / "classifier.pt" if bdir is not None else None
    from cfviewer.files import sha256_file

    doc = {
        "format": FORMAT,
        "version": VERSION,
        "method": "SAGen, Charachon et al. 2020 (Single AE)",
        "model": {"class": "cfviewer.models.sagen:SAGen", "config": gen.config(), "file": SAGEN_PT,
                  "parameters": int(sum(p.numel() for p in gen.parameters()))},
        "preset": {**preset.as_dict(), "beta_override": config.beta, "alpha_l1_override": config.alpha_l1,
                   "beta_used": list(preset.beta) if config.beta is None else [config.beta, config.beta]},
        "classifier": {
            "identity": ident,
            "bundle": bdir.name if bdir is not None else None,
            "classifier_sha256": sha256_file(clf_file) if clf_file is not None and clf_file.is_file() else None,
            "thresholds": dict(bundle.thresholds),
            "resolution": int(bundle.resolution),
        },
        "training": {
            "config": config.to_dict(),
            "data": data_from,
            "augment": aug_kwargs if config.augment else None,
            "steps_per_epoch": steps_per_epoch,
            "steps": epoch * steps_per_epoch + step_in_epoch,
            "epochs_done": epoch,
            "stopped": stopped,
            "history": history,
            "continued_from": previous,
            "seconds": {"data": data_seconds, "training": train_seconds, "evaluation": eval_seconds,
                        "this_session": time.perf_counter() - session_t0},
            **runtime_record(dev),
        },
        "validation": quality,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    bundle._sagen_doc = doc
    path = save_sagen(gen, out, doc) if save else None
    if path is not None:
        log(f"saved SAGen generators to {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return SAGenResult(generator=gen, doc=doc, path=path)


def effective_preset(config: SAGenConfig) -> Preset:
    """The Table I row of ``config.preset`` with ``config.alpha_l1`` (a4, the sparsity of the
    difference g_s - g_a) applied; b1 = b2 = ``config.beta`` is applied in :func:`sagen_loss`."""
    preset = get_preset(config.preset)
    if config.alpha_l1 is None:
        return preset
    a = preset.alpha
    return dataclasses.replace(preset, alpha=(a[0], a[1], a[2], float(config.alpha_l1)))


def continue_sha256(bundle: Any) -> str:
    """The sha256 of the bundle's sagen.pt, for ``SAGenConfig.continue_from`` (a run that
    continues training the generators the bundle has)."""
    from cfviewer.files import sha256_file

    d = companion_dir(bundle)
    pt = d / SAGEN_PT if d is not None else None
    if pt is None or not pt.is_file():
        raise SAGenMissingError(f"--continue needs trained generators in the bundle ({SAGEN_PT} is missing); "
                                f"train them first with `{_fix(bundle)}`")
    return sha256_file(pt)


def continued_architecture(bundle: Any) -> dict[str, Any]:
    """The widths and preset of the generators the bundle has (``{}`` when its sagen.json does
    not say): a ``--continue`` run that does not name them trains the same architecture."""
    d = companion_dir(bundle)
    try:
        doc = json.loads((d / SAGEN_JSON).read_text()) if d is not None else {}
    except (OSError, ValueError):
        return {}  # _continued_from names the unreadable file
    out: dict[str, Any] = {}
    widths = ((doc.get("model") or {}).get("config") or {}).get("widths")
    if widths:
        out["widths"] = [int(w) for w in widths]
    preset = (doc.get("preset") or {}).get("name")
    if preset in PRESETS:
        out["preset"] = preset
    return out


def _continued_from(bundle: Any, gen: SAGen, config: SAGenConfig) -> dict[str, Any]:
    """Load the bundle's current generators into ``gen`` (a run that continues them); their
    sagen.json training summary, for the new one. Generators trained against an earlier
    classifier of the bundle (retrained since) are a warm start for the new one: they are
    loaded without the identity check of :func:`load_sagen` and the summary says so
    (``classifier_changed``)."""
    got = continue_sha256(bundle)
    if got != config.continue_from:
        raise SAGenError(f"the bundle's {SAGEN_PT} (sha256 {got[:12]}) is not the one this run continues "
                         f"({str(config.continue_from)[:12]}); start again with --continue")
    d = companion_dir(bundle)
    try:
        doc = json.loads((d / SAGEN_JSON).read_text())
        old = SAGen(**(doc.get("model") or {}).get("config", {}))
        state = torch.load(d / SAGEN_PT, map_location="cpu", weights_only=True)
        old.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - a missing/bad json or a state that does not fit
        raise SAGenError(f"--continue: the bundle's {SAGEN_PT} + {SAGEN_JSON} cannot be read "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                         f"train afresh without --continue") from None
    deepened = False
    if old.config() == gen.config():
        gen.load_state_dict(old.state_dict())
    elif deepened_heads(old, gen):
        deepened = True  # Single AE1 -> AE2: the same generators, one more (identity) layer per head
    else:
        raise SAGenError(f"the bundle's generators have another architecture ({old.config()}) than this run "
                         f"({gen.config()}); pass the same --widths / --preset (or a Single AE2 preset, "
                         "to continue one-layer heads as two-layer heads)")
    tr = dict(doc.get("training") or {})
    ident = (doc.get("classifier") or {}).get("identity")
    return {"sagen_pt_sha256": got, "config": tr.get("config"), "steps": tr.get("steps"),
            "history": tr.get("history"), "continued_from": tr.get("continued_from"),
            "validation": doc.get("validation"), "classifier_identity": ident,
            "classifier_changed": ident != classifier_identity(bundle),
            **({"deepened_heads": "1 -> 2 layers (identity first layer)"} if deepened else {})}


def deepened_heads(old: SAGen, new: SAGen) -> bool:
    """Load one-layer-head generators ``old`` (Single AE1) into two-layer-head ``new`` (Single
    AE2) of the same U-Net and pathologies, exactly: every head's new first convolution is the
    identity (kernel centre 1 on its own channel, bias 0) and its last convolution is ``old``'s
    head. The shared U-Net ends with a ReLU, so its features are >= 0 and the ReLU between the
    two layers passes them unchanged: ``new`` computes what ``old`` did, and L_s,a (eq. 8) is
    unchanged too, since the added layers are the same in both heads of a pair. False (nothing
    loaded) when the two differ in anything else."""
    o, n = old.config(), new.config()
    if not (o["head_layers"] == 1 and n["head_layers"] == 2
            and o["pathologies"] == n["pathologies"] and o["widths"] == n["widths"]):
        return False
    new.shared.load_state_dict(old.shared.state_dict())
    w0 = new.widths[0]
    eye = torch.zeros(w0, w0, 3, 3)
    eye[torch.arange(w0), torch.arange(w0), 1, 1] = 1.0
    with torch.no_grad():
        for heads_old, heads_new in ((old.similar, new.similar), (old.adversarial, new.adversarial)):
            for h_old, h_new in zip(heads_old, heads_new):
                h_new[0].weight.copy_(eye)
                h_new[0].bias.zero_()
                h_new[-1].load_state_dict(h_old[-1].state_dict())
    return True


def _accumulate(running: dict[str, list[float]], loss: float, terms: Mapping[str, torch.Tensor]) -> None:
    running.setdefault("loss", []).append(loss)
    for key in ("L_d", "L_fc", "L_reg", "L_sa"):
        running.setdefault(key, []).append(float(terms[key].detach().mean()))
    t = terms["threshold"]
    px, ps, pa = (torch.sigmoid(terms[k]) for k in ("z_x", "z_s", "z_a"))
    pos_x = px >= t
    running.setdefault("adv_success", []).append(float(((pa >= t) != pos_x).float().mean()))
    running.setdefault("sim_keeps", []).append(float(((ps >= t) == pos_x).float().mean()))


# ---------------------------------------------------------------------- evaluation
def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of [0, 1] images, per row."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return -10.0 * torch.log10(mse)


@torch.no_grad()
def evaluate_sagen(bundle: Any, n: int = 200, seed: int = 0, *, generator: SAGen | None = None,
                   batch_size: int = 32, cache_dir: str | Path | None = None, data: Any = None,
                   progress: bool = False) -> dict[str, Any]:
    """Quality of the bundle's generators on ``n`` held-out phantoms (dataset seed
    :func:`validation_seed` of ``seed``, rendered as the bundle's training images), every image
    with every pathology's head pair:

    * ``adversarial_success``: share of the (image, pathology) pairs the classifier calls
      positive (p >= the bundle's threshold) whose f(g_a(x)) falls below the threshold (also
      per pathology, with the counts);
    * ``adversarial_success_negatives``: share of the negatives whose f(g_a(x)) reaches it;
    * ``similar_keeps_decision``: share of all pairs where g_s(x) is on x's side of it;
    * ``median_abs_similar_change``: median |f(g_s(x)) - f(x)|;
    * ``psnr``: mean PSNR (dB, [0, 1] units) of x <-> g_s, x <-> g_a, g_s <-> g_a (Table V)."""
    gen = generator or load_sagen(bundle)
    if data is None:
        data = bundle_phantoms(bundle, n, validation_seed(seed), cache_dir=cache_dir, progress=progress,
                               desc="SAGen validation phantoms")
    clf = bundle.classifier
    dev = bundle.device
    thr = torch.as_tensor(bundle.threshold_array(), dtype=torch.float32, device=dev)
    c = len(bundle.pathologies)
    px, ps, pa = [], [], []
    psnr = {"x_s": [], "x_a": [], "s_a": []}
    for i in range(0, len(data), batch_size):
        x = data.images[i:i + batch_size].to(device=dev, dtype=torch.float32)[:, None]
        x01 = to_unit(x)
        feats = gen.features(x01)
        px.append(clf(x).float())
        row_s, row_a = [], []
        for k in range(c):
            gs01, ga01 = gen.heads01(feats, x01, k)
            gs01, ga01 = gs01.clamp(0, 1), ga01.clamp(0, 1)
            probs = clf(torch.cat([from_unit(gs01), from_unit(ga01)]))[:, k].float()
            row_s.append(probs[: len(x)])
            row_a.append(probs[len(x):])
            psnr["x_s"].append(_psnr(x01, gs01))
            psnr["x_a"].append(_psnr(x01, ga01))
            psnr["s_a"].append(_psnr(gs01, ga01))
        ps.append(torch.stack(row_s, 1))
        pa.append(torch.stack(row_a, 1))
    p_x, p_s, p_a = (torch.cat(v).cpu() for v in (px, ps, pa))
    t = thr.cpu().view(1, -1)
    pos = p_x >= t
    flipped_pos = (p_a < t) & pos
    neg = ~pos
    per = {}
    for k, name in enumerate(bundle.pathologies):
        npos = int(pos[:, k].sum())
        per[name] = {"positives": npos,
                     "adversarial_success": float(flipped_pos[:, k].sum() / npos) if npos else None,
                     "median_abs_similar_change": float((p_s[:, k] - p_x[:, k]).abs().median())}
    npos = int(pos.sum())
    nneg = int(neg.sum())
    return {
        "n_images": int(len(data)),
        "seed": int(seed),
        "dataset_seed": validation_seed(seed),
        "positives": npos,
        "adversarial_success": float(flipped_pos.sum() / npos) if npos else None,
        "adversarial_success_negatives": float(((p_a >= t) & neg).sum() / nneg) if nneg else None,
        "similar_keeps_decision": float(((p_s >= t) == pos).float().mean()),
        "median_abs_similar_change": float((p_s - p_x).abs().median()),
        "mean_pred_adversarial_on_positives": float(p_a[pos].mean()) if npos else None,
        "psnr": {k: float(torch.cat(v).mean()) for k, v in psnr.items()},
        "per_pathology": per,
    }


def quality_line(quality: Mapping[str, Any] | None) -> str:
    """One line for the CLI."""
    if not quality:
        return "no held-out evaluation (n_val = 0)"
    succ = quality.get("adversarial_success")
    s = "n/a (no positives)" if succ is None else f"{100 * succ:.1f} %"
    return (f"held-out ({quality['n_images']} images, {quality['positives']} positive image x pathology pairs): "
            f"adversarial success {s}, median |f(g_s(x)) - f(x)| = {quality['median_abs_similar_change']:.4f}, "
            f"similar keeps the decision {100 * quality['similar_keeps_decision']:.1f} %, "
            f"PSNR x-g_s {quality['psnr']['x_s']:.1f} dB, g_s-g_a {quality['psnr']['s_a']:.1f} dB")


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


__all__ = [
    "DEFAULT_PRESET", "DUO_PRESETS", "PRESETS", "Preset", "SAGen", "SAGenConfig", "SAGenError",
    "SAGenMissingError", "SAGenResult", "SAGenStaleError", "SAGenStopped", "SharedUNet",
    "attach_sagen", "bce_on_map", "bundle_phantoms", "choose_heads", "classifier_logits", "default_work_dir",
    "from_unit", "make_head", "to_unit", "training_data_seed", "classification_loss", "classifier_identity",
    "deepened_heads", "detach_sagen", "evaluate_sagen", "get_preset", "has_sagen", "load_sagen", "preset_names",
    "quality_line", "random_sagen", "sagen_doc", "sagen_loss", "save_sagen", "similarity_loss",
    "threshold_log_map", "threshold_map", "total_variation", "train_sagen", "validation_seed",
    "weight_distance",
]
