"""Input checks shared by the metrics: one error type, messages that name the input."""

from __future__ import annotations

import numpy as np

from cfviewer.errors import CfviewerError


class MetricInputError(CfviewerError, ValueError):
    """A metric was given arrays it cannot score (wrong shape, empty mask, NaNs)."""


def as_map(attr_map: np.ndarray, name: str = "map") -> np.ndarray:
    """A finite 2D float64 copy of an attribution map."""
    a = np.asarray(attr_map, dtype=np.float64)
    if a.ndim != 2:
        raise MetricInputError(f"{name} must be a 2D H x W array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise MetricInputError(f"{name} contains NaN or infinite values; fix the explainer output")
    return a


def as_mask(mask: np.ndarray, shape: tuple[int, ...], name: str = "mask",
            allow_empty: bool = False) -> np.ndarray:
    """A 2D bool mask of the map's shape (non-empty unless `allow_empty`)."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise MetricInputError(
            f"{name} has shape {m.shape} but the map has shape {tuple(shape)}; "
            "resize the mask to the map (nearest neighbour) first"
        )
    m = m.astype(bool)
    if not allow_empty and not m.any():
        raise MetricInputError(f"{name} is empty: a localisation score needs at least one true pixel")
    if not allow_empty and m.all():
        raise MetricInputError(f"{name} covers the whole image: nothing to localise against")
    return m
