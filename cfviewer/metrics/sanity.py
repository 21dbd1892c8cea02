"""Model-parameter randomisation test, cascading (Adebayo et al., "Sanity checks for saliency
maps", NeurIPS 2018).

The classifier's layers are re-initialised from the top (output) down, cumulatively; after
each step the explanation is recomputed and compared with the one of the trained model by
the Spearman rank correlation of the absolute maps (Adebayo et al. also use the absolute
value, since some methods flip sign). A method that explains the *model* should decorrelate
quickly; one that mostly reproduces image edges stays correlated.

Layers are grouped into blocks as in the paper (which randomises Inception block by block):
a leaf module with parameters belongs to the shallowest enclosing module that is an element
of an ``nn.Sequential`` (a stage / dense block / stem layer), or is its own group otherwise
(e.g. the linear head). Blocks are ordered by when they run in a forward pass, output first.
Re-initialisation uses each module's own ``reset_parameters`` (PyTorch's default
initialisation; batch-norm layers go back to identity statistics), seeded.

The caller's bundle is never modified: the randomisation runs on a deep copy.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from cfviewer.metrics._checks import MetricInputError


def _has_own_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def layer_groups(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, list[str]]]:
    """(block name, leaf module names) pairs, output block first.

    The order comes from a forward pass of ``example_input`` (hooks record when each leaf
    with parameters runs); leaves that never run are left out.
    """
    names = dict(model.named_modules())
    leaves = [n for n, m in names.items() if n and _has_own_params(m)]
    order: dict[str, int] = {}
    handles = []
    for n in leaves:
        def hook(_m, _i, _o, n=n):
            order.setdefault(n, len(order))
        handles.append(names[n].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    def group_of(leaf: str) -> str:
        parts = leaf.split(".")
        for depth in range(1, len(parts) + 1):  # shallowest first
            parent = ".".join(parts[: depth - 1])
            if isinstance(names[parent], nn.Sequential):
                return ".".join(parts[:depth])
        return leaf

    groups: dict[str, list[str]] = {}
    last_run: dict[str, int] = {}
    for n in leaves:
        if n not in order:
            continue
        g = group_of(n)
        groups.setdefault(g, []).append(n)
        last_run[g] = max(last_run.get(g, -1), order[n])
    return [(g, groups[g]) for g in sorted(groups, key=lambda g: -last_run[g])]


def reinitialize_(model: nn.Module, leaf_names: list[str], seed: int) -> None:
    """Re-initialise the named leaf modules in place with their default initialisation."""
    names = dict(model.named_modules())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for n in leaf_names:
            m = names[n]
            if hasattr(m, "reset_running_stats"):
                m.reset_running_stats()
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
            else:  # a custom leaf: fresh normal weights of the same scale
                for p in m.parameters(recurse=False):
                    with torch.no_grad():
                        p.normal_(0.0, float(p.detach().std()) or 0.01)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of |a| and |b| (NaN when either is constant)."""
    x = np.abs(np.asarray(a, dtype=np.float64)).ravel()
    y = np.abs(np.asarray(b, dtype=np.float64)).ravel()
    if x.shape != y.shape:
        raise MetricInputError(f"maps of different sizes: {x.size} vs {y.size} pixels")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


@dataclass
class RandomizationCurve:
    steps: list[str]
    """"original", then the block names in the order they were randomised (cumulative)."""
    correlations: np.ndarray
    """(len(steps)) x N Spearman correlations with the original maps (row 0 = 1)."""
    maps: list[np.ndarray] = field(default_factory=list, repr=False)
    """The maps at every step (N x H x W each), when kept."""

    @property
    def full_reset(self) -> np.ndarray:
        """Correlations after every block is randomised (one per image)."""
        return self.correlations[-1]

    def mean_curve(self) -> np.ndarray:
        """Mean over images at each step (NaNs ignored)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps stay NaN
            return np.nanmean(self.correlations, axis=1)


def cascading_randomization(
    bundle: Any,
    explain: Callable[[Any], np.ndarray],
    *,
    seed: int = 0,
    keep_maps: bool = False,
) -> RandomizationCurve:
    """Cascading randomisation of ``bundle.classifier``.

    ``explain(b)`` must return the map(s) (H x W or N x H x W) of the same images and
    targets computed with bundle ``b``; it is called once on an untouched deep copy and once
    after each cumulative block re-initialisation. ``bundle`` itself is never modified.
    """
    work = copy.deepcopy(bundle)
    model: nn.Module = work.classifier
    param = next(model.parameters())
    r = int(work.resolution)
    groups = layer_groups(model, torch.zeros(1, 1, r, r, device=param.device, dtype=param.dtype))
    if not groups:
        raise MetricInputError("the classifier has no layers with parameters to randomise")

    def run() -> np.ndarray:
        out = np.asarray(explain(work), dtype=np.float64)
        return out[None] if out.ndim == 2 else out

    original = run()
    steps = ["original"]
    rows = [np.ones(len(original))]
    kept = [original] if keep_maps else []
    for i, (name, leaves) in enumerate(groups):
        reinitialize_(model, leaves, seed=seed * 1000 + i)
        maps = run()
        if maps.shape != original.shape:
            raise MetricInputError(f"explain() returned {maps.shape}, first {original.shape}")
        rows.append(np.array([rank_correlation(o, m) for o, m in zip(original, maps)]))
        steps.append(name)
        if keep_maps:
            kept.append(maps)
    return RandomizationCurve(steps=steps, correlations=np.vstack(rows), maps=kept)
