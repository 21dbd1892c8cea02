"""The inpainting attribution of issue 12 (``shared/papers/inpainting-attribution.txt``): the
objective L(M) of section 2 with the compaction S and the constraint d(M) <= delta (shared by
both explainers of :mod:`cfviewer.explain.inpainting`), and the one-pass mask network of
section 2.1 / section 3 "Attribution" with its training. The marginalisation pi(M) is the
partial-convolution inpainter of :mod:`cfviewer.models.inpainter` (section 2.2).

Notation (section 2): image I (the model input x, N x 1 x R x R in [-1024, 1024]), pathology c
(output k of the multi-label classifier f), M the attribution map, theta the classification
threshold (the bundle's operating point of c), delta the area limit, S the set of compact and
connected masks.

The objective (section 2.1) and how it is read here
--------------------------------------------------
As printed: ``L(M) = phi(M) + psi(M) + lambda R(M), s.t. d(M) <= delta`` with
``phi(M) = -log p(c | pi(M))`` and ``psi(M) = log odds(I) - log odds(pi(M))``, "hence weigh the
probability of the marginalized image, enforcing p(c | pi(M)) <= theta".

* **phi is read as -log(1 - p(c | pi(M))) = -log p(not c | pi(M)) = softplus(z)**, z the logit
  of c on pi(M). Minimising the printed -log p(c | pi(M)) would *raise* p(c | pi(M)), i.e. search
  for a region whose removal makes the image look more pathological, the opposite of the stated
  aim (a healthy counterfactual, p(c | pi(M)) <= theta, section 2: "a sufficiently healthy image
  able to fool the classifier"). The sign of the probability is lost in the text, the
  intention is not: -log of the probability of the *healthy* outcome is the cross-entropy
  toward "not c", which decreases monotonically as p(c | pi(M)) falls.
* **psi is read as log odds(pi(M)) - log odds(I) = z - z_I** (the printed difference with the
  sign turned): as printed, psi is the *drop* of the log odds, and minimising it would reward
  a smaller drop, again contradicting "enforcing p(c|pi(M)) <= theta". With the sign turned a
  larger drop lowers L. It is the change of the logit, scale-free across images whose
  starting confidence differs (a saturated p(c | I) = 0.9999 has phi's gradient as small as a
  barely positive one, psi's is the same).
* **Normalisation** ("all terms were normalized through a generalized logistic function"):
  Richards' curve ``Y(t) = A + (K - A) / (C + Q exp(-B (t - M)))^(1 / nu)``
  (:func:`generalized_logistic`), here with C = Q = nu = 1 and per term:

  - phi: A = 0, K = 1, centre M = -log(1 - theta) (phi at the threshold), slope B =
    ``phi_slope`` (1): the pull is strongest where p(c | pi(M)) crosses theta and fades once it
    is well below, so the area terms then shrink the mask back toward the threshold;
  - psi: A = 0, K = 1, centre M = 0 (no change), slope ``psi_slope`` (0.2 per logit): nearly
    linear over the 10-20 logits between x and its fully inpainted image, so the pull keeps
    telling the pixels apart where phi's logistic is flat (p(c | pi(M)) far below or far above
    theta). With 0.5 the term saturates on the fully inpainted start and every mask cell
    shrinks at the same pace (on the demo bundle: scattered leftovers, GT precision 0.43 vs
    0.49 at 0.15-0.2);
  - R: A = -1, K = 1, M = 0, slope ``tv_slope`` (0.2): Y = tanh(0.1 R), 0 at R = 0, bounded by
    1 and nearly linear up to the R ~ 5 of a mask scattered in a dozen blobs (with slope 1 such
    a mask saturates the term and nothing pulls the blobs together).

  Every term is thus in [0, 1] (A = -1 with t >= 0 gives [0, 1) too), so lambda and mu weigh
  comparable quantities. lambda = ``tv_weight`` = 3: with lambda = 10 a single blob's TV
  (~0.8 for a disc of radius 0.1 R: 10 tanh(0.08) ~ 0.8) outweighs what removing the finding
  gains (Y_phi + Y_psi fall from ~1.5 to ~0.7), so L itself ranks the empty mask above a
  correct one (on the demo bundle: 1.40 vs 1.53); at 3 a correct mask scores ~0.97.
* **R, the weighted total variation** ([23]): ``R(M) = R_px * mean_v (g_x |d_x M| + g_y |d_y M|)``
  (anisotropic L1 TV on forward differences, multiplied by the side R_px so that it measures the
  perimeter in image sides: a disc of radius 0.1 R has R ~ 0.8), weighted by the image's edge
  indicator ``g = 1 / (1 + (|d I| / kappa)^2)``, kappa = the mean |d I| of the image (each
  direction): a mask border along an anatomical edge costs less than one across homogeneous
  tissue (``edge_weighted_tv=False``: g = 1). The paper names the term but not its weights.
* **d(M) = the share of the image the binary mask covers.** The definition of M_hat asks for
  the *smallest* area (argmin d(M)); L as printed has no area term, only the constraint, so
  nothing in it prefers a smaller mask below delta except the perimeter penalty. An explicit
  ``area_weight`` mu * d(M) (linear, not normalised: a constant shrink pressure) is added; set
  it to 0 for the printed objective.
* **The constraint d(M) <= delta** "was enforced by the method proposed in [15]". The
  reference list is not in the extracted text; [15] sorts between Jaeger [14] and Lee [17],
  and the penalty used here is the log-barrier extension of Kervadec et al. ("Constrained deep
  networks: Lagrangian optimization via log-barrier extensions", 2019/2022), which fits that
  slot and is made for constraints inside SGD training (no per-sample dual variables):
  ``psi_t(z) = -(1/t) log(-z)`` for z <= -1/t^2, ``t z - (1/t) log(1/t^2) + 1/t`` above, z =
  d(M) - delta, t growing during the optimisation (``barrier_t0`` x ``barrier_growth`` per
  step / epoch up to ``barrier_t_max``). It is finite and linear for infeasible masks (the
  searches start from a mask covering the image, see below).

  L(M) = Y_phi(phi) + Y_psi(psi) + lambda Y_R(R) + mu d(M) + psi_t(d(M) - delta)

S, compact connected masks (sections 2 and 3)
---------------------------------------------
"Any map ... can be (differentiably) mapped into S by taking the smoothed maximum of a
convolution with a Gaussian kernel [16, 9]" with "a Gaussian RBF with sigma = 5e-2, and a
smoothing parameter of 30" (Fong et al. 2019's extremal-perturbation masks):
``S(m)(v) = sum_u a_u exp(T a_u) / sum_u exp(T a_u)``, ``a_u = k(v - u) m(u)``, k the unnormalised
Gaussian RBF (k(0) = 1) of sigma = 0.05 of the image side, T = 30, over the (2 ceil(3 sigma) + 1)^2
neighbourhood (:func:`smooth_max`). It is computed on a grid of ``grid_fraction`` (1/4) of the
side (32 x 32 at 128 px, sigma = 1.6 cells; the full-resolution neighbourhood would be 39 x 39
per pixel) from the area-averaged map and brought back by bilinear upsampling: the smoothing
removes detail below sigma (6.4 px at 128 px) anyway. The binary mask is ``S(m) >= 0.55``
("we thresholded the masks at 0.55"). A single cell becomes a blob of radius ~1.1 sigma; values
stay in [0, 1] (a weighted mean of values in [0, 1]).

The mask fed to the inpainter is the thresholded one (Fig. 2: the marginalisation net is "fed
by thresholded attribution"), made differentiable by a straight-through estimator: forward the
binary mask, backward the gradient of S(m) (``straight_through=False``: the continuous S(m)
itself; the inpainter then still sees holes where keep < its own mask threshold).

Why the iterative search starts from a mask covering the image: the inpainter's composite is
``keep x + (1 - keep) raw``, so d composite / d keep = x - raw, and outside the holes raw is the
inpainter's reconstruction of the valid pixels, ~x. At an empty mask the classifier term has
(almost) no gradient: nothing tells the optimiser which pixel to remove (and where raw is a
healthy estimate, the linearisation at the empty mask is unreliable: on demo-bundle positives
its sign inside the finding was wrong for about half of them, while the finite change of
inpainting the finding lowered the logit by 3-10). Starting from a full hole (the fully
inpainted image, healthy by construction), the area terms shrink the mask and the classifier
terms hold the pixels whose restoration would raise p(c | pi(M)): a deletion from the whole
rather than a growth from nothing. The per-cell logits (with Adam's per-parameter steps) let
cells leave the mask one by one.

The mask network (section 2.1, section 3 "Attribution")
--------------------------------------------------------
:class:`MaskNet` is a U-Net whose encoder is the frozen classifier (no classification
layers): its last four resolution scales, each the features right after the activation of the
last layer at that scale (:func:`classifier_scales`: the stem's ReLUs and the residual
stages' outputs of :class:`cfviewer.models.classifier.Classifier`, read by walking its stem
and stages, so the classifier, its outputs and its state-dict keys are untouched). At 128 px the
demo classifier (``last_stride`` 1) gives 64, 32, 16, 8 px scales of 24, 32, 64, 256
channels; the default classifier (``last_stride`` 2) R/4 .. R/32.

* Feature filter on each scale: ``x * sigmoid(W_m relu(W_l^T x + b_l) + b_m)`` (additive
  attention, one coefficient per location: W_l a 1 x 1 convolution to max(C/2, 8) channels, W_m
  one to 1 channel) (:class:`FeatureFilter`).
* Decoder: four blocks, one per scale, from the deepest: the deepest block applies a 1 x 1
  convolution of its own depth to the classifier's last features and adds their filtered
  version (the classifier's final features attenuated to "an initial localization"); each of
  the three others upsamples by nearest neighbours (x 2 here, to the next scale's size), applies
  a 1 x 1 convolution with the depth of that scale (ReLU) and adds the filtered features of the
  scale. The paper's "four consecutive blocks of: upsampling by a factor of two, followed by
  convolution and merging" leaves open what the first block upsamples from when the encoder
  has four scales; here it is the block at the deepest scale that does not upsample.
* Head: a 1 x 1 convolution of depth 2 per pathology (2 K channels, the target's pair c1, c2
  is picked), upsampled bilinearly to the input resolution ("after final upsampling back to
  input-resolution, we apply 1 x 1 conv of depth two": the two linear operations commute, so
  the convolution runs before the upsampling); map = |c1| / (|c1| + |c2| + 1e-6); M = S(map),
  binary M >= 0.55.
* **Multi-label: one (c1, c2) pair per pathology**, sharing gates and decoder. The paper's
  classifiers are binary; the demo classifier predicts 6 independent pathologies, and the
  region to remove for Effusion is not the one for Cardiomegaly. A per-class output pair costs
  2 channels of a 1 x 1 convolution, keeps the paper's architecture up to that layer, and
  trains every pathology's pair on the same decoder features (like SAGen's head pair per
  pathology, :mod:`cfviewer.models.sagen`); a class-conditioned decoder would add an input the
  paper does not have.
* Init: weights random-normal ("all trainable weights where random-normal initialized": He
  normal for the 1 x 1 convolutions, N(0, 0.01) for the head), biases 0 except the c2 bias of
  every pair, 1: the first maps are ~0 (empty masks; the distillation term grows them).

Training (section 3 "Attribution", scaled to a CPU)
--------------------------------------------------
On phantoms rendered as the bundle's training images (:func:`cfviewer.models.sagen.bundle_phantoms`,
the bundle's training seed when recorded), every (image, pathology) pair the frozen classifier
calls positive (p >= the bundle's threshold): a negative's minimal mask is empty by the
definition of M_hat, and its gradient (see above) says nothing. Validation: pairs of held-out
phantoms (another seed). The classifier and the inpainter are frozen (eval, no gradients);
only the filters, the decoder and the head train. The paper uses plain gradient descent with a
cyclic learning rate between 1e-6 and 1e-4 for up to 5000 epochs with early stopping; on the
30-minute CPU budget that moves nothing, so the default is Adam with a triangular cyclic
learning rate between 1e-4 and 1e-3 (``optimizer="sgd"`` with ``lr_min=1e-6, lr_max=1e-4`` is the
paper's), early stopping when the validation loss (L(M) at the final barrier t) has not
improved for ``patience`` evaluations (every ``eval_every`` steps and at the end; the best
weights are kept). Every step is deterministic given (seed, epoch, step); checkpoints in the
work folder every ``checkpoint_every`` steps, on Ctrl-C and when ``max_minutes`` is spent (the
best weights so far are then saved, marked ``"stopped": "max_minutes"``; ``--resume`` continues).

**Distillation toward the iterative masks** (``distill_pairs``, ``distill_weight``): the paper's
objective alone failed on the phantoms. Trained by L(M) alone (through the inpainter, with
the straight-through mask) the network collapsed to empty masks within ~60-100 steps on the
demo bundle, whether it started from full masks (a shared bias shrinks every mask at once,
faster than the classifier terms can tell the pixels apart: the mask jumps from ~90 % to 0 %
in a few steps) or from empty ones (no gradient, above); random exploration holes fed to the
inpainter (``explore_discs``, :func:`marginalise`: the inpainter's estimate also outside the
mask) did not get it out in 550 steps. So ``distill_pairs`` (160) training pairs get their
``inpainting-iterative`` mask (:func:`iterative_targets`, ``target_steps`` 150, cached in the
work folder and resumed pair by pair), and the loss is L(M) + ``distill_weight`` (1) x
(BCE + 1 - Dice)(S(m), target) on the pairs whose search was feasible
(:func:`distillation_loss`); the network trains on those pairs. With 64 targets and 4.5 minutes
of training on the demo bundle (a stand-in inpainter) the validation success rose from 0 to
~0.1 while L(M) alone stayed at 0.

Files, beside the bundle: ``DIR/masknet.pt`` (state dict) + ``DIR/masknet.json`` (config,
objective, training history, validation, the classifier identity of
:func:`cfviewer.models.sagen.classifier_identity` and the sha256 of the inpainter it was trained
through). :func:`load_masknet` refuses a network trained for another classifier
(:class:`MaskNetStaleError`) and names the command that trains one when there is none
(:class:`MaskNetMissingError`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
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
from cfviewer.errors import BundleError, CfviewerError
from cfviewer.models.bundle import cached_companion, companion_command, companion_dir, read_companion_doc

FORMAT = "cfviewer-masknet"
VERSION = 1
MASKNET_PT = "masknet.pt"
MASKNET_JSON = "masknet.json"
CHECKPOINT = "masknet_checkpoint.pt"
MASKNET_TAG = 0x6D61736B6E6574  # "masknet": its seed streams
FIX_COMMAND = "cfviewer train-explainer masknet --bundle {dir}"
INPAINTER_FIX = "cfviewer train-explainer inpainter --bundle {dir}"
MAP_EPS = 1e-6


class MaskNetError(CfviewerError):
    """A mask-network configuration, file or model is unusable."""


class MaskNetMissingError(MaskNetError):
    """The bundle has no trained mask network."""


class MaskNetStaleError(MaskNetError):
    """The stored mask network was trained against another classifier (or other thresholds)."""


# ---------------------------------------------------------------------- the objective
@dataclass(frozen=True)
class Objective:
    """The parameters of L(M), S and d(M) <= delta (module docstring)."""

    max_area: float = 0.2          # delta: at most this share of the image
    mask_threshold: float = 0.55   # section 3
    sigma: float = 0.05            # section 3: Gaussian RBF sigma, share of the image side
    temperature: float = 30.0      # section 3: "smoothing parameter of 30"
    grid_fraction: float = 0.25    # S is computed on a grid of this share of the side
    tv_weight: float = 3.0         # lambda
    area_weight: float = 1.0       # mu (0: the printed objective, constraint only)
    phi_slope: float = 1.0
    psi_slope: float = 0.2
    tv_slope: float = 0.2
    edge_weighted_tv: bool = True
    straight_through: bool = True
    barrier_t0: float = 5.0
    barrier_growth: float = 1.02
    barrier_t_max: float = 50.0

    def validate(self) -> None:
        if not 0.0 < self.max_area <= 1.0:
            raise MaskNetError(f"objective: max_area {self.max_area} must be in (0, 1]")
        if not 0.0 < self.mask_threshold < 1.0:
            raise MaskNetError(f"objective: mask_threshold {self.mask_threshold} must be in (0, 1)")
        if not self.sigma > 0 or not self.temperature > 0 or not 0.0 < self.grid_fraction <= 1.0:
            raise MaskNetError("objective: sigma > 0, temperature > 0 and 0 < grid_fraction <= 1 are required")
        if min(self.tv_weight, self.area_weight) < 0 or min(self.phi_slope, self.psi_slope, self.tv_slope) <= 0:
            raise MaskNetError("objective: weights >= 0 and slopes > 0 are required")
        if not (self.barrier_t0 > 0 and self.barrier_growth >= 1 and self.barrier_t_max >= self.barrier_t0):
            raise MaskNetError("objective: barrier_t0 > 0, barrier_growth >= 1, barrier_t_max >= barrier_t0")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> "Objective":
        known = {f.name for f in dataclasses.fields(cls)}
        obj = cls(**{k: v for k, v in dict(doc or {}).items() if k in known})
        obj.validate()
        return obj

    def grid(self, resolution: int) -> int:
        return max(4, int(round(int(resolution) * self.grid_fraction)))

    def barrier_t(self, i: int) -> float:
        return float(min(self.barrier_t_max, self.barrier_t0 * self.barrier_growth ** max(0, int(i))))


def generalized_logistic(t: torch.Tensor, *, A: float = 0.0, K: float = 1.0, B: float = 1.0,
                         M: float | torch.Tensor = 0.0, nu: float = 1.0, Q: float = 1.0,
                         C: float = 1.0) -> torch.Tensor:
    """Richards' generalised logistic ``A + (K - A) / (C + Q exp(-B (t - M)))^(1 / nu)``
    (computed stably in log space for C = Q = 1)."""
    u = -B * (t - M)
    if C == 1.0 and Q == 1.0:
        base = torch.exp(-F.softplus(u) / nu)  # (1 + e^u)^(-1/nu)
    else:
        base = (C + Q * torch.exp(u)).pow(-1.0 / nu)
    return A + (K - A) * base


def gaussian_rbf(sigma: float) -> tuple[torch.Tensor, int]:
    """(weights (2r+1)^2, r): the unnormalised Gaussian k(d) = exp(-|d|^2 / (2 sigma^2)) over
    the offsets of a (2r+1) x (2r+1) window, r = ceil(3 sigma) (at least 1), in grid cells."""
    r = max(1, int(math.ceil(3.0 * float(sigma))))
    d = torch.arange(-r, r + 1, dtype=torch.float32)
    d2 = d.view(-1, 1) ** 2 + d.view(1, -1) ** 2
    return torch.exp(-d2 / (2.0 * float(sigma) ** 2)).reshape(-1), r


def smooth_max(m: torch.Tensor, sigma: float, temperature: float) -> torch.Tensor:
    """S on a grid: ``S(m)(v) = sum_u a_u softmax_u(T a_u)``, a_u = k(v - u) m(u) over the
    window of :func:`gaussian_rbf` (zero padding outside). m: N x 1 x G x G in [0, 1]."""
    n, _, h, w = m.shape
    weights, r = gaussian_rbf(sigma)
    weights = weights.to(device=m.device, dtype=m.dtype).view(1, -1, 1)
    patches = F.unfold(m, 2 * r + 1, padding=r)  # N x K x (h w)
    a = weights * patches
    out = (a * torch.softmax(float(temperature) * a, dim=1)).sum(1)
    return out.view(n, 1, h, w)


def compact(m_grid: torch.Tensor, resolution: int, objective: Objective) -> torch.Tensor:
    """S of a grid map (N x 1 x G x G in [0, 1]) brought to the input resolution (bilinear):
    the continuous compact mask, N x 1 x R x R in [0, 1]."""
    g = m_grid.shape[-1]
    s = smooth_max(m_grid, objective.sigma * g, objective.temperature)
    if g != resolution:
        s = F.interpolate(s, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return s.clamp(0.0, 1.0)


def compact_full(m: torch.Tensor, objective: Objective) -> torch.Tensor:
    """S of a full-resolution map (N x 1 x R x R): area-averaged to the grid, then :func:`compact`."""
    r = m.shape[-1]
    g = objective.grid(r)
    mg = F.adaptive_avg_pool2d(m, g) if g != r else m
    return compact(mg, r, objective)


def binarize(s: torch.Tensor, objective: Objective) -> torch.Tensor:
    """The mask the inpainter is fed: ``S >= threshold`` forward; with ``straight_through`` the
    gradient of S backward; else S itself."""
    if not objective.straight_through:
        return s
    hard = (s >= objective.mask_threshold).to(s.dtype)
    return hard + s - s.detach()


def weighted_tv(mask: torch.Tensor, image: torch.Tensor | None, edge_weighted: bool = True) -> torch.Tensor:
    """R(M) per sample (module docstring): side x mean of g |forward difference| per direction."""
    r = mask.shape[-1]
    dmx = (mask[..., :, 1:] - mask[..., :, :-1]).abs()
    dmy = (mask[..., 1:, :] - mask[..., :-1, :]).abs()
    if edge_weighted and image is not None:
        dix = (image[..., :, 1:] - image[..., :, :-1]).abs()
        diy = (image[..., 1:, :] - image[..., :-1, :]).abs()
        kx = dix.mean((1, 2, 3), keepdim=True).clamp_min(1e-6)
        ky = diy.mean((1, 2, 3), keepdim=True).clamp_min(1e-6)
        dmx = dmx / (1.0 + (dix / kx) ** 2)
        dmy = dmy / (1.0 + (diy / ky) ** 2)
    return r * (dmx.mean((1, 2, 3)) + dmy.mean((1, 2, 3)))


def log_barrier(z: torch.Tensor, t: float) -> torch.Tensor:
    """The log-barrier extension of Kervadec et al. for a constraint z <= 0 (module docstring)."""
    t = float(t)
    lim = -1.0 / t ** 2
    inside = -torch.log((-z).clamp_min(1.0 / t ** 2)) / t
    outside = t * z - math.log(1.0 / t ** 2) / t + 1.0 / t
    return torch.where(z <= lim, inside, outside)


def target_logits(clf: nn.Module, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Logit of row i's class k[i] (``logits_of`` for one-class-per-row models such as Attri-Net,
    else the classifier's ``logits``, else the logit of its clamped probabilities)."""
    k = torch.as_tensor(k, dtype=torch.long, device=x.device).view(-1)
    if callable(getattr(clf, "logits_of", None)):
        return clf.logits_of(x, k)
    from cfviewer.models.sagen import classifier_logits

    z = classifier_logits(clf, x)
    return z[torch.arange(len(x), device=x.device), k]


def exploration_holes(n: int, resolution: int, generator: torch.Generator, max_discs: int = 4,
                      radius: tuple[float, float] = (0.05, 0.15)) -> torch.Tensor:
    """N x 1 x R x R binary masks: the union of 1..``max_discs`` random discs of radius
    ``radius`` (shares of the side) per image (CPU draws from ``generator``)."""
    r = int(resolution)
    counts = torch.randint(1, int(max_discs) + 1, (n,), generator=generator)
    cy = torch.rand(n, max_discs, generator=generator) * r
    cx = torch.rand(n, max_discs, generator=generator) * r
    rad = (radius[0] + (radius[1] - radius[0]) * torch.rand(n, max_discs, generator=generator)) * r
    use = torch.arange(max_discs).view(1, -1) < counts.view(-1, 1)
    yy, xx = torch.meshgrid(torch.arange(r) + 0.5, torch.arange(r) + 0.5, indexing="ij")
    d2 = (yy.view(1, 1, r, r) - cy.view(n, -1, 1, 1)) ** 2 + (xx.view(1, 1, r, r) - cx.view(n, -1, 1, 1)) ** 2
    inside = (d2 <= rad.view(n, -1, 1, 1) ** 2) & use.view(n, -1, 1, 1)
    return inside.any(1, keepdim=True).float()


def marginalise(inpainter: nn.Module, x: torch.Tensor, keep: torch.Tensor,
                explore: torch.Tensor | None = None) -> torch.Tensor:
    """pi(M): the inpainter's composite ``keep x + (1 - keep) raw``. With ``explore`` (binary
    N x 1 x R x R), the inpainter's network sees the holes of the mask *and* of ``explore``,
    while the composite keeps x wherever keep = 1: the forward image is (up to the context the
    extra holes hide) pi(M), and d pi / d keep = x - raw is the inpainter's healthy estimate
    also outside the mask, in the exploration holes (module docstring, "Training")."""
    if explore is None or not (callable(getattr(inpainter, "raw", None))
                               and callable(getattr(inpainter, "composite", None))):
        return inpainter(x, keep)
    net_keep = keep.detach() * (1.0 - explore.to(keep.dtype))
    return inpainter.composite(x, keep, inpainter.raw(x, net_keep))


def objective_terms(clf: nn.Module, inpainter: nn.Module, x: torch.Tensor, s: torch.Tensor, k: torch.Tensor,
                    z0: torch.Tensor, thresholds: torch.Tensor, objective: Objective, t: float,
                    explore: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L(M) per sample for continuous compact masks ``s`` (N x 1 x R x R, S(m)), images x in
    classifier units, classes k, logits z0 = z(I) and thresholds theta (per sample); the terms
    and the inpainted images (``"composite"``) in the dict. ``explore``: :func:`marginalise`."""
    mask = binarize(s, objective)
    keep = 1.0 - mask
    comp = marginalise(inpainter, x, keep, explore)
    z = target_logits(clf, comp, k)
    theta = thresholds.to(device=x.device, dtype=z.dtype).clamp(1e-6, 1 - 1e-6)
    phi = F.softplus(z)                                  # -log(1 - p(c | pi(M)))
    psi = z - z0.to(z.dtype)                             # log odds(pi(M)) - log odds(I)
    tv = weighted_tv(mask, x, objective.edge_weighted_tv)
    area = mask.mean((1, 2, 3))
    n_phi = generalized_logistic(phi, B=objective.phi_slope, M=-torch.log1p(-theta))
    n_psi = generalized_logistic(psi, B=objective.psi_slope, M=0.0)
    n_tv = generalized_logistic(tv, A=-1.0, K=1.0, B=objective.tv_slope, M=0.0)
    barrier = log_barrier(area - objective.max_area, t)
    total = n_phi + n_psi + objective.tv_weight * n_tv + objective.area_weight * area + barrier
    with torch.no_grad():
        hard = (s >= objective.mask_threshold).to(s.dtype)
    terms = {"loss": total, "phi": n_phi, "psi": n_psi, "tv": n_tv, "area": area, "barrier": barrier,
             "z": z.detach(), "p": torch.sigmoid(z.detach()), "hard_area": hard.mean((1, 2, 3)),
             "composite": comp}
    return total, terms


# ---------------------------------------------------------------------- the iterative reference
# (the explainer ``inpainting-iterative`` and the distillation targets of the network)
def iterative_search(clf: torch.nn.Module, inpainter: torch.nn.Module, x: torch.Tensor, k: int, theta: float,
                     objective: Objective, *, max_steps: int = 300, patience: int = 40, lr: float = 0.05,
                     init_mask: float = 0.75) -> dict[str, Any]:
    """Minimise L(M) over a mask logit grid for one image x (1 x 1 x R x R): the best feasible
    step (module docstring) or, when none is feasible, the step of the lowest p(c | pi(M)) among
    those within the area limit (else of all)."""
    t_start = time.perf_counter()
    r = x.shape[-1]
    g = objective.grid(r)
    kk = torch.tensor([int(k)], device=x.device)
    thr = torch.tensor([float(theta)], device=x.device)
    with torch.no_grad():
        z0 = target_logits(clf, x, kk).detach()
    logits = torch.full((1, 1, g, g), float(np.log(init_mask / (1 - init_mask))), device=x.device,
                        requires_grad=True)
    opt = torch.optim.Adam([logits], lr=lr)
    best: dict[str, Any] | None = None
    fallback: dict[str, Any] | None = None
    stopped = "max_steps"
    step = 0
    since = 0
    for step in range(int(max_steps)):
        s = compact(torch.sigmoid(logits), r, objective)
        loss, terms = objective_terms(clf, inpainter, x, s, kk, z0, thr, objective, objective.barrier_t(step))
        p = float(terms["p"][0])
        area = float(terms["hard_area"][0])
        rec = None
        if p <= theta and area <= objective.max_area:
            if best is None or area < best["area"] - 1e-12:
                rec = best = {"step": step, "p": p, "area": area}
                since = 0
            else:
                since += 1
        else:
            if best is not None:
                since += 1
            key = (area > objective.max_area, p)
            if fallback is None or key < fallback["key"]:
                rec = fallback = {"step": step, "p": p, "area": area, "key": key}
        if rec is not None:
            rec["soft"] = s.detach().clone()
            rec["composite"] = terms["composite"].detach().clone()
        if best is not None and since >= patience:
            stopped = "patience"
            break
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    chosen = best if best is not None else fallback
    assert chosen is not None
    hard = (chosen["soft"] >= objective.mask_threshold).to(x.dtype)
    return {"soft": chosen["soft"], "hard": hard, "composite": chosen["composite"],
            "record": {"steps": step + 1, "stopped": stopped, "feasible": best is not None,
                       "best_step": chosen["step"], "p": chosen["p"], "area": chosen["area"],
                       "grid": g, "seconds": time.perf_counter() - t_start}}


# ---------------------------------------------------------------------- the encoder scales
def supports_masknet(clf: Any) -> bool:
    """Whether the classifier exposes the stem + residual stages the encoder reads."""
    return isinstance(getattr(clf, "stem", None), nn.Sequential) and isinstance(getattr(clf, "stages", None),
                                                                                 nn.Sequential)


def unsupported_classifier_error(bundle: Any, method: str = "inpainting") -> BundleError:
    from cfviewer.models.attrinet import is_attrinet

    clf = getattr(bundle, "classifier", None)
    if is_attrinet(clf):
        why = ("this is an Attri-Net bundle: its own explanation is `attrinet` (its class maps); "
               "`inpainting-iterative` optimises a mask against any classifier")
    else:
        why = "use `inpainting-iterative`, which optimises a mask against any classifier"
    return BundleError(
        f"explainer {method!r} needs a classifier whose encoder gives multi-scale features (cfviewer's "
        f"Classifier: a stem and residual stages); {type(clf).__name__} has none; {why}")


def classifier_scales(clf: nn.Module, x: torch.Tensor, n_scales: int = 4) -> list[torch.Tensor]:
    """The classifier's last ``n_scales`` resolution scales for inputs in [-1024, 1024], from the
    finest to the coarsest: at each spatial size, the output of the last activation (a stem
    ReLU or a residual stage, whose blocks end in their ReLU) at that size."""
    from cfviewer.models.classifier import INPUT_SCALE

    if not supports_masknet(clf):
        raise MaskNetError(f"{type(clf).__name__} has no stem / stages to read multi-scale features from")
    by_size: dict[tuple[int, int], torch.Tensor] = {}
    h = x / INPUT_SCALE
    for mod in clf.stem:
        h = mod(h)
        if isinstance(mod, nn.ReLU):
            by_size[tuple(h.shape[-2:])] = h
    for stage in clf.stages:
        h = stage(h)
        by_size[tuple(h.shape[-2:])] = h
    sizes = sorted(by_size, key=lambda s: -s[0] * s[1])
    if len(sizes) < n_scales:
        raise MaskNetError(f"the classifier has {len(sizes)} resolution scales at this input size, "
                           f"the mask network needs {n_scales}")
    return [by_size[s] for s in sizes[-n_scales:]]


def scale_channels(clf: nn.Module, resolution: int, n_scales: int = 4) -> list[int]:
    dev = next(clf.parameters()).device
    with torch.no_grad():
        feats = classifier_scales(clf, torch.zeros(1, 1, resolution, resolution, device=dev), n_scales)
    return [int(f.shape[1]) for f in feats]


# ---------------------------------------------------------------------- the network
class FeatureFilter(nn.Module):
    """``x * sigmoid(W_m relu(W_l^T x + b_l) + b_m)``: additive attention, one coefficient per
    location (1 x 1 convolutions)."""

    def __init__(self, channels: int, inner: int | None = None):
        super().__init__()
        inner = int(inner or max(8, channels // 2))
        self.w_l = nn.Conv2d(channels, inner, 1)
        self.w_m = nn.Conv2d(inner, 1, 1)

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.w_m(F.relu(self.w_l(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.coefficients(x)


class MaskNet(nn.Module):
    """The attribution network of section 2.1 (module docstring) on the features of a frozen
    classifier. ``forward(feats, k, resolution)`` takes the four scales of
    :func:`classifier_scales` (finest first) and the class index of each row, and returns the
    map |c1| / (|c1| + |c2|) of each row's class, N x 1 x R x R in [0, 1] (before S)."""

    def __init__(self, pathologies: Sequence[str], channels: Sequence[int], resolution: int):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) != 4 or min(channels) < 1:
            raise MaskNetError(f"MaskNet: four positive scale depths are needed, got {channels}")
        if not pathologies:
            raise MaskNetError("MaskNet: no pathologies")
        self.pathologies = list(pathologies)
        self.channels = channels
        self.resolution = int(resolution)
        self.filters = nn.ModuleList(FeatureFilter(c) for c in channels)
        # decoder block j works at scale j: the deepest (3) maps its own depth, the others map
        # the depth of the scale below to theirs
        self.convs = nn.ModuleList(
            nn.Conv2d(channels[j + 1] if j < 3 else channels[3], channels[j], 1) for j in range(4))
        self.head = nn.Conv2d(channels[0], 2 * len(self.pathologies), 1)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[1::2] = 1.0  # c1 ~ 0, c2 ~ 1: the first maps are empty

    def config(self) -> dict[str, Any]:
        return {"pathologies": list(self.pathologies), "channels": list(self.channels),
                "resolution": self.resolution}

    def decode(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        e = list(feats)
        h = F.relu(self.convs[3](e[3])) + self.filters[3](e[3])
        for j in (2, 1, 0):
            h = F.interpolate(h, size=e[j].shape[-2:], mode="nearest")
            h = F.relu(self.convs[j](h)) + self.filters[j](e[j])
        return h

    def forward(self, feats: Sequence[torch.Tensor], k: torch.Tensor | Sequence[int] | int,
                resolution: int | None = None) -> torch.Tensor:
        h = self.decode(feats)
        n = h.shape[0]
        k = self._index(k, n, h.device)
        out = self.head(h).view(n, len(self.pathologies), 2, *h.shape[-2:])
        pair = out[torch.arange(n, device=h.device), k]  # N x 2 x h x w
        r = int(resolution or self.resolution)
        if pair.shape[-1] != r:
            pair = F.interpolate(pair, size=(r, r), mode="bilinear", align_corners=False)
        a, b = pair[:, :1].abs(), pair[:, 1:].abs()
        return a / (a + b + MAP_EPS)

    def _index(self, k: Any, n: int, device: torch.device) -> torch.Tensor:
        if isinstance(k, int):
            k = [k] * n
        t = torch.as_tensor(k, dtype=torch.long).reshape(-1)
        if len(t) != n:
            raise MaskNetError(f"MaskNet: {n} images but {len(t)} class indices")
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= len(self.pathologies)):
            raise MaskNetError(f"MaskNet: class index out of range 0..{len(self.pathologies) - 1}")
        return t.to(device)


def masknet_maps(net: MaskNet, clf: nn.Module, x: torch.Tensor, k: Any, objective: Objective
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw map, S(map)) of images x (classifier units) for classes k: the classifier's scales
    without gradients (the encoder is frozen), the network, S."""
    with torch.no_grad():
        feats = classifier_scales(clf, x)
    raw = net(feats, k, x.shape[-1])
    return raw, compact_full(raw, objective)


# ---------------------------------------------------------------------- files / bundle cache
def fix_command(bundle: Any) -> str:
    return companion_command(FIX_COMMAND, bundle)


def inpainter_fix_command(bundle: Any) -> str:
    return companion_command(INPAINTER_FIX, bundle)


def has_masknet(bundle: Any) -> bool:
    if getattr(bundle, "_masknet", None) is not None:
        return True
    d = companion_dir(bundle)
    return d is not None and (d / MASKNET_PT).is_file() and (d / MASKNET_JSON).is_file()


def attach_masknet(bundle: Any, net: MaskNet, doc: Mapping[str, Any] | None = None) -> MaskNet:
    """Cache ``net`` on the in-memory bundle (what :func:`load_masknet` returns afterwards):
    bundle's device, eval mode, frozen. It must fit the bundle's pathologies and resolution."""
    from cfviewer.models.sagen import classifier_identity

    if list(net.pathologies) != list(bundle.pathologies):
        raise MaskNetError(f"a mask network for {net.pathologies} does not fit a classifier predicting "
                           f"{bundle.pathologies}; train one with `{fix_command(bundle)}`")
    if int(net.resolution) != int(bundle.resolution):
        raise MaskNetError(f"a mask network for {net.resolution} px does not fit a bundle of {bundle.resolution} px; "
                           f"train one with `{fix_command(bundle)}`")
    net = net.to(bundle.device).eval().requires_grad_(False)
    doc = dict(doc or {"format": FORMAT, "version": VERSION, "model": {"config": net.config()},
                       "objective": Objective().as_dict(),
                       "classifier": {"identity": classifier_identity(bundle)}})
    bundle._masknet = net
    bundle._masknet_doc = doc
    return net


def detach_masknet(bundle: Any) -> None:
    for name in ("_masknet", "_masknet_doc"):
        if hasattr(bundle, name):
            delattr(bundle, name)


def masknet_doc(bundle: Any) -> dict[str, Any]:
    load_masknet(bundle)
    return dict(getattr(bundle, "_masknet_doc", {}) or {})


def load_masknet(bundle: Any) -> MaskNet:
    """The bundle's mask network, read once from ``DIR/masknet.pt`` + ``DIR/masknet.json`` and
    cached on the bundle (its device, eval mode, frozen). Raises :class:`MaskNetMissingError`
    naming the command, :class:`MaskNetStaleError` for another classifier, :class:`MaskNetError`
    for unusable files."""
    from cfviewer.models.sagen import classifier_identity

    net = cached_companion(bundle, "_masknet")
    if net is not None:
        return net
    pt, doc = read_companion_doc(
        bundle, MASKNET_PT, MASKNET_JSON, FORMAT, VERSION, fix=fix_command(bundle),
        in_memory="this bundle has no inpainting mask network (it was built in memory: train one with "
                  "cfviewer.models.masknet.train_masknet or attach_masknet, or load a bundle folder that has "
                  f"{MASKNET_PT}); for a saved bundle run `{FIX_COMMAND.format(dir='DIR')}`",
        missing=f"the bundle {{d}} has no trained inpainting mask network ({MASKNET_PT} + {MASKNET_JSON} are "
                f"missing); train it with `{fix_command(bundle)}` (after its inpainter: "
                f"`{inpainter_fix_command(bundle)}`)",
        missing_error=MaskNetMissingError, error=MaskNetError)
    want = classifier_identity(bundle)
    got = (doc.get("classifier") or {}).get("identity")
    if got != want:
        raise MaskNetStaleError(
            f"the mask network in {pt} was trained against another classifier or other thresholds "
            f"(identity {got}, this bundle's classifier is {want}); retrain it with `{fix_command(bundle)}`")
    trained_through = (doc.get("inpainter") or {}).get("sha256")
    from cfviewer.models.inpainter import INPAINTER_PT

    inp_pt = pt.with_name(INPAINTER_PT)
    if trained_through and inp_pt.is_file():
        from cfviewer.files import sha256_file

        now = sha256_file(inp_pt)
        if now != trained_through:
            raise MaskNetStaleError(
                f"the mask network in {pt} was trained through another inpainter (sha256 {trained_through[:12]}; "
                f"the bundle's {INPAINTER_PT} is {now[:12]}): its masks are what that inpainter needed; "
                f"retrain it with `{fix_command(bundle)}`")
    try:
        net = MaskNet(**(doc.get("model") or {}).get("config", {}))
        net.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
    except MaskNetError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise MaskNetError(f"{pt} does not fit {pt.with_name(MASKNET_JSON)} ({type(exc).__name__}: {first}); "
                           f"retrain with `{fix_command(bundle)}`") from None
    return attach_masknet(bundle, net, doc)


def save_masknet(net: MaskNet, directory: str | Path, doc: Mapping[str, Any]) -> Path:
    from cfviewer.files import save_torch_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_torch_atomic({k: v.detach().cpu() for k, v in net.state_dict().items()}, directory / MASKNET_PT)
    tmp = directory / (MASKNET_JSON + ".tmp")
    tmp.write_text(json.dumps(_jsonable(doc), indent=2) + "\n")
    tmp.replace(directory / MASKNET_JSON)
    return directory / MASKNET_PT


def new_masknet(bundle: Any, seed: int = 0) -> MaskNet:
    """A freshly initialised network for ``bundle``'s classifier (seeded)."""
    if not supports_masknet(bundle.classifier):
        raise unsupported_classifier_error(bundle)
    chans = scale_channels(bundle.classifier, bundle.resolution)
    state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        net = MaskNet(bundle.pathologies, chans, bundle.resolution)
    finally:
        torch.random.set_rng_state(state)
    return net


def random_masknet(bundle: Any, seed: int = 0) -> MaskNet:
    """An untrained network attached to ``bundle`` (tests)."""
    return attach_masknet(bundle, new_masknet(bundle, seed))


# ---------------------------------------------------------------------- training
@dataclass
class MaskNetConfig:
    """Everything that determines the trained network (recorded in masknet.json)."""

    epochs: int = 200              # at most; early stopping and --max-minutes end it before
    n_train: int = 300             # phantoms (~1.7 positive pairs each on the demo bundle)
    n_val: int = 50
    batch_size: int = 8
    optimizer: str = "adam"        # "sgd": the paper's plain gradient descent
    lr_min: float = 1e-4           # cyclic learning rate (paper: 1e-6 .. 1e-4 with SGD)
    lr_max: float = 1e-3
    cycle_steps: int = 200         # steps per half cycle (triangular)
    patience: int = 5              # evaluations without a better validation loss
    eval_every: int = 150          # steps between validations (0: at each epoch end)
    seed: int = 0
    checkpoint_every: int = 50
    max_minutes: float | None = None
    data_jobs: int = 1
    distill_pairs: int = 160       # training pairs with an iterative target (0: the paper's objective alone)
    distill_weight: float = 1.0
    target_steps: int = 150        # the iterative search of the targets (steps, patience, lr)
    target_patience: int = 20
    target_lr: float = 0.05
    explore_discs: int = 0         # random exploration holes per image and step (0: none; module docstring)
    objective: dict[str, Any] = field(default_factory=dict)  # overrides of Objective

    RESUMABLE_KEYS = ("epochs", "max_minutes", "checkpoint_every", "data_jobs", "patience")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "MaskNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise MaskNetError(f"mask network config: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
        cfg = cls(**dict(doc))
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def objective_obj(self) -> Objective:
        known = {f.name for f in dataclasses.fields(Objective)}
        unknown = sorted(set(self.objective) - known)
        if unknown:
            raise MaskNetError(f"mask network objective: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
        return Objective.from_dict(self.objective)

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.n_train < 1 or self.n_val < 0:
            raise MaskNetError("mask network config: epochs >= 0, batch_size >= 1, n_train >= 1, n_val >= 0")
        if self.optimizer not in ("adam", "sgd"):
            raise MaskNetError(f"mask network config: optimizer {self.optimizer!r}: use 'adam' or 'sgd'")
        if not 0 < self.lr_min <= self.lr_max or self.cycle_steps < 1:
            raise MaskNetError("mask network config: 0 < lr_min <= lr_max and cycle_steps >= 1 are required")
        if self.patience < 1 or self.eval_every < 0:
            raise MaskNetError("mask network config: patience >= 1 and eval_every >= 0 are required")
        if self.distill_pairs < 0 or self.distill_weight < 0 or self.explore_discs < 0:
            raise MaskNetError("mask network config: distill_pairs, distill_weight and explore_discs must be >= 0")
        if self.target_steps < 1 or self.target_patience < 1 or not self.target_lr > 0:
            raise MaskNetError("mask network config: target_steps >= 1, target_patience >= 1, target_lr > 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise MaskNetError(f"mask network config: max_minutes {self.max_minutes} must be > 0")
        self.objective_obj()

    def fingerprint(self, classifier: str, inpainter: str | None) -> str:
        d = {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE_KEYS}
        d["classifier"] = classifier
        d["inpainter"] = inpainter
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


class MaskNetStopped(Exception):
    """Raised when ``stop_after_steps`` is reached (a checkpoint has been written): tests."""


@dataclass
class MaskNetResult:
    net: MaskNet
    doc: dict[str, Any]
    path: Path | None


@dataclass
class PairData:
    """Training pairs: images N x R x R (float16) and (image, class) pairs the classifier calls
    positive, with the logit z(I) of each pair; optionally the iterative masks of the pairs
    (distillation targets, P x R x R bool) and whether each was feasible."""

    images: torch.Tensor
    pairs: torch.Tensor   # P x 2 (image index, class)
    z0: torch.Tensor      # P
    targets: torch.Tensor | None = None
    target_ok: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def subset(self, rows: torch.Tensor) -> "PairData":
        return PairData(self.images, self.pairs[rows], self.z0[rows],
                        None if self.targets is None else self.targets[rows],
                        None if self.target_ok is None else self.target_ok[rows])


def step_seed(seed: int, epoch: int, step: int) -> int:
    ss = np.random.SeedSequence([int(seed), MASKNET_TAG, int(epoch), int(step) + 1])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def validation_seed(seed: int) -> int:
    return int(np.random.SeedSequence([int(seed), MASKNET_TAG, 1]).generate_state(1, dtype=np.uint32)[0])


def default_work_dir(bundle_dir: str | Path | None) -> Path:
    from cfviewer.paths import work_cache_dir

    return work_cache_dir("masknet", bundle_dir)


@torch.no_grad()
def positive_pairs(bundle: Any, images: torch.Tensor, batch_size: int = 32) -> PairData:
    """Every (image, class) pair the bundle's classifier calls positive on ``images``
    (N x R x R, classifier units)."""
    clf = bundle.classifier
    dev = bundle.device
    thr = torch.as_tensor(bundle.threshold_array(), dtype=torch.float32)
    from cfviewer.models.sagen import classifier_logits

    zs = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device=dev, dtype=torch.float32)[:, None]
        zs.append(classifier_logits(clf, x).float().cpu())
    z = torch.cat(zs) if zs else torch.zeros(0, len(bundle.pathologies))
    pos = torch.sigmoid(z) >= thr.view(1, -1)
    idx = pos.nonzero()
    return PairData(images=images, pairs=idx.long(), z0=z[idx[:, 0], idx[:, 1]] if len(idx) else torch.zeros(0))


def _inpainter_record(bundle: Any) -> dict[str, Any]:
    from cfviewer.files import sha256_file
    from cfviewer.models.inpainter import INPAINTER_PT

    d = companion_dir(bundle)
    pt = d / INPAINTER_PT if d is not None else None
    return {"file": INPAINTER_PT if pt is not None and pt.is_file() else None,
            "sha256": sha256_file(pt) if pt is not None and pt.is_file() else None}


def _load_inpainter(bundle: Any) -> nn.Module:
    from cfviewer.models.inpainter import load_inpainter

    return load_inpainter(bundle)


def distillation_loss(s: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per sample: BCE(S(m), T) + 1 - Dice(S(m), T) toward a binary target mask T (the Dice
    part keeps a mask of a few % of the image from being outweighed by its background)."""
    s = s.clamp(1e-6, 1 - 1e-6)
    t = target.to(s.dtype)
    dims = tuple(range(1, s.ndim))
    bce = F.binary_cross_entropy(s, t, reduction="none").mean(dims)
    dice = (2 * (s * t).sum(dims) + 1.0) / (s.sum(dims) + t.sum(dims) + 1.0)
    return bce + 1.0 - dice


def batch_loss(net: MaskNet, clf: nn.Module, inpainter: nn.Module, data: PairData, rows: torch.Tensor,
               thresholds: torch.Tensor, objective: Objective, t: float, device: Any,
               explore: torch.Tensor | None = None, distill_weight: float = 0.0
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean L(M) (+ ``distill_weight`` x :func:`distillation_loss` on the pairs with a feasible
    target) over the pairs ``rows`` of ``data`` (``explore``: :func:`marginalise`)."""
    pr = data.pairs[rows]
    x = data.images[pr[:, 0]].to(device=device, dtype=torch.float32)[:, None]
    k = pr[:, 1].to(device)
    _, s = masknet_maps(net, clf, x, k, objective)
    if explore is not None:
        explore = explore.to(device)
    total, terms = objective_terms(clf, inpainter, x, s, k, data.z0[rows].to(device), thresholds[pr[:, 1]],
                                   objective, t, explore)
    if distill_weight and data.targets is not None:
        ok = data.target_ok[rows].to(device=device, dtype=total.dtype)
        d = distillation_loss(s, data.targets[rows].to(device)[:, None])
        terms["distill"] = d.detach()
        total = total + float(distill_weight) * ok * d
    return total.mean(), terms


@torch.no_grad()
def evaluate_masknet(net: MaskNet, clf: nn.Module, inpainter: nn.Module, data: PairData, thresholds: torch.Tensor,
                     objective: Objective, t: float, device: Any, batch_size: int = 16) -> dict[str, Any]:
    """Validation: mean loss, share of pairs whose binary mask brings p(c | pi(M)) to <= theta
    within the area limit, mean binary area, mean p(c | pi(M))."""
    net.eval()
    losses, ok, areas, ps = [], [], [], []
    for i in range(0, len(data), batch_size):
        rows = torch.arange(i, min(i + batch_size, len(data)))
        _, terms = batch_loss(net, clf, inpainter, data, rows, thresholds, objective, t, device)
        theta = thresholds[data.pairs[rows, 1]].to(terms["p"].device)
        losses.append(terms["loss"].cpu())
        areas.append(terms["hard_area"].cpu())
        ps.append(terms["p"].cpu())
        ok.append(((terms["p"] <= theta) & (terms["hard_area"] <= objective.max_area)).float().cpu())
    if not losses:
        return {"pairs": 0, "loss": None, "success": None, "mean_area": None, "mean_p": None}
    return {"pairs": int(len(data)), "loss": float(torch.cat(losses).mean()),
            "success": float(torch.cat(ok).mean()), "mean_area": float(torch.cat(areas).mean()),
            "mean_p": float(torch.cat(ps).mean())}


def iterative_targets(clf: nn.Module, inpainter: nn.Module, data: PairData, thresholds: torch.Tensor,
                      objective: Objective, config: "MaskNetConfig", device: Any, cache: Path | None = None,
                      progress: bool = False, deadline: float | None = None,
                      log: Callable[[str], None] = print) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The ``inpainting-iterative`` masks of the pairs of ``data`` (the distillation targets,
    P x R x R bool) and their feasibility, read from / written to ``cache`` pair by pair (a
    resumed run continues where it stopped); stops early (returning the count done) when
    ``time.perf_counter()`` passes ``deadline``."""
    p, r = len(data), int(data.images.shape[-1])
    targets = torch.zeros(p, r, r, dtype=torch.bool)
    ok = torch.zeros(p, dtype=torch.bool)
    done = 0
    if cache is not None and cache.is_file():
        try:
            st = torch.load(cache, map_location="cpu", weights_only=True)
            if tuple(st["pairs"].shape) == tuple(data.pairs.shape) and torch.equal(st["pairs"], data.pairs):
                done = int(st["done"])
                targets[:done] = st["targets"][:done]
                ok[:done] = st["ok"][:done]
        except Exception:  # noqa: BLE001 - a broken cache is recomputed
            done = 0
    bar = None
    if progress and done < p:
        from tqdm import tqdm

        bar = tqdm(total=p, initial=done, desc="iterative targets", unit="pair", dynamic_ncols=True,
                   mininterval=1.0)
    last_save = time.perf_counter()
    try:
        for i in range(done, p):
            if deadline is not None and time.perf_counter() >= deadline:
                break
            img, k = int(data.pairs[i, 0]), int(data.pairs[i, 1])
            x = data.images[img:img + 1].to(device=device, dtype=torch.float32)[:, None]
            res = iterative_search(clf, inpainter, x, k, float(thresholds[k]), objective,
                                   max_steps=config.target_steps, patience=config.target_patience,
                                   lr=config.target_lr)
            targets[i] = res["hard"][0, 0].cpu() > 0.5
            ok[i] = bool(res["record"]["feasible"])
            done = i + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(feasible=f"{float(ok[:done].float().mean()):.2f}")
            if cache is not None and (time.perf_counter() - last_save > 30 or done == p):
                from cfviewer.files import save_torch_atomic

                save_torch_atomic({"pairs": data.pairs, "done": done, "targets": targets, "ok": ok}, cache)
                last_save = time.perf_counter()
    finally:
        if bar is not None:
            bar.close()
        if cache is not None and done:
            from cfviewer.files import save_torch_atomic

            save_torch_atomic({"pairs": data.pairs, "done": done, "targets": targets, "ok": ok}, cache)
    return targets, ok, done


def _make_optimizer(net: MaskNet, config: MaskNetConfig):
    params = [p for p in net.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr_min)
    else:
        opt = torch.optim.Adam(params, lr=config.lr_min)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=config.lr_min, max_lr=config.lr_max,
                                              step_size_up=config.cycle_steps, mode="triangular",
                                              cycle_momentum=False)
    return opt, sched


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from cfviewer.files import save_torch_atomic

    save_torch_atomic(state, path)


def _load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise MaskNetError(f"checkpoint {path} is unreadable ({exc}); delete it or run without --resume") from None
    if state.get("fingerprint") != fingerprint:
        raise MaskNetError(
            f"checkpoint {path} belongs to another mask network configuration, classifier or inpainter; run "
            "without --resume to start over (only --epochs, --patience and --max-minutes may change)")
    return state


def train_masknet(
    bundle: Any,
    config: MaskNetConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
    data: Any = None,
    val_data: Any = None,
    log: Callable[[str], None] = print,
    save: bool = True,
) -> MaskNetResult:
    """Train the mask network for ``bundle`` through its inpainter (module docstring), save it
    to ``out_dir`` (default: the bundle's folder) and attach it to ``bundle``.

    ``data`` / ``val_data`` (:class:`~cfviewer.models.data.TrainingData` or N x R x R image
    tensors) replace the phantoms (tests); ``stop_after_steps`` saves a checkpoint and raises
    :class:`MaskNetStopped` at that global step."""
    from cfviewer.models.sagen import bundle_phantoms, classifier_identity, training_data_seed

    config = config or MaskNetConfig()
    config.validate()
    objective = config.objective_obj()
    if not supports_masknet(bundle.classifier):
        raise unsupported_classifier_error(bundle)
    inp = _load_inpainter(bundle)  # InpainterMissingError names its command
    dev = bundle.device
    bdir = companion_dir(bundle)
    out = Path(out_dir) if out_dir is not None else bdir
    if save and out is None:
        raise MaskNetError("train_masknet: the bundle was built in memory; pass out_dir=... (or save=False)")
    work = Path(work_dir) if work_dir is not None else default_work_dir(out or bdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / CHECKPOINT
    ident = classifier_identity(bundle)
    inp_rec = _inpainter_record(bundle)
    fp = config.fingerprint(ident, inp_rec.get("sha256"))
    saved = _load_checkpoint(ckpt_path, fp) if resume else None
    if resume and saved is None:
        log(f"no mask network checkpoint in {work}: starting from the beginning")
    if not resume and ckpt_path.exists():
        ckpt_path.unlink()
    session_t0 = time.perf_counter()

    # ---- data
    t0 = time.perf_counter()
    if data is None:
        seed, seed_from = training_data_seed(bundle, config.seed)
        data = bundle_phantoms(bundle, config.n_train, seed, cache_dir=work, progress=progress,
                               desc="mask network training phantoms", n_jobs=config.data_jobs)
        data_from = f"{config.n_train} phantoms, dataset seed {seed} ({seed_from})"
    else:
        data_from = f"{len(data)} images given to train_masknet"
    if val_data is None and config.n_val:
        val_data = bundle_phantoms(bundle, config.n_val, validation_seed(config.seed), cache_dir=work,
                                   progress=progress, desc="mask network validation phantoms",
                                   n_jobs=config.data_jobs)
    images = data.images if hasattr(data, "images") else torch.as_tensor(data)
    if int(images.shape[-1]) != int(bundle.resolution):
        raise MaskNetError(f"mask network training data is {images.shape[-1]} px but the bundle's input is "
                           f"{bundle.resolution} px")
    train = positive_pairs(bundle, images)
    val = None
    if val_data is not None:
        val = positive_pairs(bundle, val_data.images if hasattr(val_data, "images") else torch.as_tensor(val_data))
    if len(train) == 0:
        raise MaskNetError(f"the classifier calls no pathology positive on the {len(images)} training images: "
                           "nothing to explain (use more images, --n-train)")
    data_seconds = time.perf_counter() - t0
    log(f"mask network: {len(train)} positive (image, pathology) pairs from {len(images)} training images"
        + (f", {len(val)} from {len(val_data.images if hasattr(val_data, 'images') else val_data)} "
           "validation images" if val is not None else ""))

    # ---- models
    clf = copy.deepcopy(bundle.classifier).to(dev).eval().requires_grad_(False)
    inp = inp.eval().requires_grad_(False)
    thresholds = torch.as_tensor(bundle.threshold_array(), dtype=torch.float32)
    budget = None if config.max_minutes is None else 60.0 * float(config.max_minutes)

    # ---- distillation targets (the iterative masks of a seeded subset of the training pairs)
    target_seconds, targets_done = 0.0, 0
    if config.distill_pairs:
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(
            int(np.random.SeedSequence([int(config.seed), MASKNET_TAG, 3]).generate_state(1)[0])))
        train = train.subset(pick[:config.distill_pairs])
        t0 = time.perf_counter()
        tg, ok, targets_done = iterative_targets(
            clf, inp, train, thresholds, objective, config, dev, cache=work / f"masknet_targets_{fp}.pt",
            progress=progress, deadline=None if budget is None else session_t0 + budget, log=log)
        target_seconds = time.perf_counter() - t0
        train = PairData(train.images, train.pairs[:targets_done], train.z0[:targets_done], tg[:targets_done],
                         ok[:targets_done])
        log(f"mask network: {targets_done} iterative targets ({int(ok[:targets_done].sum())} feasible, "
            f"{target_seconds:.0f} s this session)")
        if targets_done == 0:
            raise MaskNetError("mask network: the time budget was spent before the first iterative target; "
                               "give more --max-minutes (or --distill-pairs 0)")
    net = new_masknet(bundle, int(np.random.SeedSequence([int(config.seed), MASKNET_TAG, 2]).generate_state(1)[0] >> 1))
    net = net.to(dev)
    opt, sched = _make_optimizer(net, config)
    n = len(train)
    bs = min(config.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    epoch, step_in_epoch, history, seconds_before = 0, 0, [], 0.0
    best: dict[str, Any] = {"loss": None, "state": None, "epoch": None, "step": None}
    bad_evals = 0
    running: dict[str, list[float]] = {}
    if saved is not None:
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        epoch, step_in_epoch = int(saved["epoch"]), int(saved["step_in_epoch"])
        history = list(saved["history"])
        running = {k: list(v) for k, v in dict(saved.get("running") or {}).items()}
        seconds_before = float(saved["seconds"])
        best = dict(saved["best"])
        bad_evals = int(saved["bad_evals"])
    loop_t0 = time.perf_counter()

    def state() -> dict[str, Any]:
        return {"fingerprint": fp, "model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
                "history": history, "running": running, "best": best, "bad_evals": bad_evals,
                "seconds": seconds_before + time.perf_counter() - loop_t0}

    def evaluate(gstep: int) -> bool:
        """Validation record + early-stopping bookkeeping; True when patience is exhausted."""
        nonlocal bad_evals, running
        t = objective.barrier_t(epoch)
        rec: dict[str, Any] = {"epoch": epoch + (1 if step_in_epoch >= steps_per_epoch else 0),
                               "step": gstep, "lr": float(opt.param_groups[0]["lr"]), "barrier_t": t}
        rec.update({f"train_{k}": float(np.mean(v)) for k, v in running.items() if v})
        running = {}
        if val is not None and len(val):
            v = evaluate_masknet(net, clf, inp, val, thresholds, objective, objective.barrier_t_max, dev)
            rec.update({f"val_{k}": v[k] for k in ("loss", "success", "mean_area", "mean_p")})
            score = v["loss"]
        else:
            score = rec.get("train_loss")
        rec["seconds"] = seconds_before + time.perf_counter() - loop_t0
        history.append(rec)
        improved = score is not None and (best["loss"] is None or score < best["loss"] - 1e-6)
        if improved:
            best.update(loss=float(score), state={k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                        epoch=rec["epoch"], step=gstep)
            bad_evals = 0
        else:
            bad_evals += 1
        line = (f"mask network step {gstep}: train loss {rec.get('train_loss', float('nan')):.4f}, "
                f"success {rec.get('train_success', float('nan')):.2f}, area {rec.get('train_area', float('nan')):.3f}")
        if "val_loss" in rec:
            line += (f"; validation loss {rec['val_loss']:.4f}, success {rec['val_success']:.2f}, "
                     f"area {rec['val_mean_area']:.3f}")
        (bar.write if bar is not None else log)(line)
        net.train()
        return bad_evals >= config.patience

    stopped: str | None = None
    if config.distill_pairs and targets_done < config.distill_pairs and targets_done < len(pick):
        stopped = "max_minutes"  # the budget ended while computing targets: resume continues them
    bar = None
    if progress and stopped is None:
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch * config.epochs, initial=epoch * steps_per_epoch + step_in_epoch,
                   desc="mask network", unit="step", dynamic_ncols=True, miniters=1, mininterval=1.0)
    try:
        while epoch < config.epochs and stopped is None:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(step_seed(config.seed, epoch, -1)))
            net.train()
            while step_in_epoch < steps_per_epoch:
                gstep = epoch * steps_per_epoch + step_in_epoch
                if stop_after_steps is not None and gstep >= stop_after_steps:
                    _save_checkpoint(ckpt_path, state())
                    raise MaskNetStopped(f"mask network: stopped after {gstep} steps")
                if budget is not None and time.perf_counter() - session_t0 >= budget:
                    stopped = "max_minutes"
                    break
                sd = step_seed(config.seed, epoch, step_in_epoch)
                torch.manual_seed(sd)
                rows = perm[step_in_epoch * bs:(step_in_epoch + 1) * bs]
                explore = (exploration_holes(len(rows), bundle.resolution, torch.Generator().manual_seed(sd),
                                             config.explore_discs) if config.explore_discs else None)
                loss, terms = batch_loss(net, clf, inp, train, rows, thresholds, objective,
                                         objective.barrier_t(epoch), dev, explore, config.distill_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                theta = thresholds[train.pairs[rows, 1]].to(terms["p"].device)
                running.setdefault("loss", []).append(float(loss.detach()))
                running.setdefault("success", []).append(
                    float(((terms["p"] <= theta) & (terms["hard_area"] <= objective.max_area)).float().mean()))
                running.setdefault("area", []).append(float(terms["hard_area"].mean()))
                running.setdefault("p", []).append(float(terms["p"].mean()))
                if "distill" in terms:
                    running.setdefault("distill", []).append(float(terms["distill"].mean()))
                step_in_epoch += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(running['loss'][-20:]):.4f}",
                                    area=f"{np.mean(running['area'][-20:]):.3f}")
                if config.eval_every and (gstep + 1) % config.eval_every == 0:
                    if evaluate(gstep + 1):
                        stopped = "early_stopping"
                        break
                if config.checkpoint_every and (gstep + 1) % config.checkpoint_every == 0:
                    _save_checkpoint(ckpt_path, state())
            if stopped is not None:
                break
            done = False if config.eval_every else evaluate((epoch + 1) * steps_per_epoch)
            epoch += 1
            step_in_epoch = 0
            _save_checkpoint(ckpt_path, state())
            if done:
                stopped = "early_stopping"
    except KeyboardInterrupt:
        _save_checkpoint(ckpt_path, state())
        raise
    finally:
        if bar is not None:
            bar.close()
    gstep = epoch * steps_per_epoch + step_in_epoch
    if stopped != "early_stopping" and gstep > 0 and (not history or history[-1]["step"] != gstep):
        evaluate(gstep)  # the weights since the last validation are candidates too
    _save_checkpoint(ckpt_path, state())
    if stopped == "max_minutes":
        log(f"mask network: the {config.max_minutes:g}-minute budget is spent at epoch {epoch + 1}, step "
            f"{step_in_epoch}: saving the best network so far (continue with --resume)")
    elif stopped == "early_stopping":
        log(f"mask network: early stopping (no better validation loss for {config.patience} evaluations)")
    train_seconds = seconds_before + time.perf_counter() - loop_t0
    if best["state"] is not None:
        net.load_state_dict(best["state"])
    net.eval()
    t0 = time.perf_counter()
    quality = (evaluate_masknet(net, clf, inp, val, thresholds, objective, objective.barrier_t_max, dev)
               if val is not None and len(val) else None)
    eval_seconds = time.perf_counter() - t0
    from cfviewer.files import sha256_file

    clf_file = bdir / "classifier.pt" if bdir is not None else None
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "method": "inpainting attribution mask network (issue 12, shared/papers/inpainting-attribution.txt)",
        "model": {"class": "cfviewer.models.masknet:MaskNet", "config": net.config(), "file": MASKNET_PT,
                  "parameters": int(sum(p.numel() for p in net.parameters()))},
        "objective": objective.as_dict(),
        "classifier": {
            "identity": ident,
            "bundle": bdir.name if bdir is not None else None,
            "classifier_sha256": sha256_file(clf_file) if clf_file is not None and clf_file.is_file() else None,
            "thresholds": dict(bundle.thresholds),
            "resolution": int(bundle.resolution),
        },
        "inpainter": inp_rec,
        "training": {
            "config": config.to_dict(),
            "data": data_from,
            "pairs": {"train": len(train), "validation": len(val) if val is not None else 0},
            "distillation": ({"pairs": targets_done, "feasible": int(train.target_ok.sum()),
                              "weight": config.distill_weight, "seconds_this_session": target_seconds}
                             if config.distill_pairs else None),
            "steps_per_epoch": steps_per_epoch,
            "steps": epoch * steps_per_epoch + step_in_epoch,
            "epochs_done": epoch,
            "stopped": stopped,
            "best": {"loss": best["loss"], "epoch": best["epoch"], "step": best["step"]},
            "history": history,
            "seconds": {"data": data_seconds, "training": train_seconds, "evaluation": eval_seconds,
                        "this_session": time.perf_counter() - session_t0},
            **runtime_record(dev),
        },
        "validation": quality,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    net = attach_masknet(bundle, net, doc)
    path = save_masknet(net, out, doc) if save else None
    if path is not None:
        log(f"saved the mask network to {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return MaskNetResult(net=net, doc=doc, path=path)


def quality_line(quality: Mapping[str, Any] | None) -> str:
    if not quality:
        return "no validation (n_val = 0 or no positive validation pairs)"
    return (f"validation ({quality['pairs']} positive pairs): p(c | pi(M)) <= theta within the area limit for "
            f"{100 * quality['success']:.1f} %, mean mask area {100 * quality['mean_area']:.1f} %, "
            f"mean p(c | pi(M)) {quality['mean_p']:.3f}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


__all__ = [
    "FORMAT", "MASKNET_JSON", "MASKNET_PT", "FeatureFilter", "MaskNet", "MaskNetConfig", "MaskNetError",
    "MaskNetMissingError", "MaskNetResult", "MaskNetStaleError", "MaskNetStopped", "Objective", "PairData",
    "attach_masknet", "batch_loss", "binarize", "classifier_scales", "compact", "compact_full", "detach_masknet",
    "distillation_loss", "evaluate_masknet", "exploration_holes", "iterative_search", "iterative_targets", "fix_command", "marginalise", "gaussian_rbf", "generalized_logistic", "has_masknet", "load_masknet",
    "log_barrier", "masknet_doc", "masknet_maps", "new_masknet", "objective_terms", "positive_pairs",
    "quality_line", "random_masknet", "save_masknet", "scale_channels", "smooth_max", "supports_masknet",
    "target_logits", "train_masknet", "unsupported_classifier_error", "weighted_tv",
]
