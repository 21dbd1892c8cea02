"""Attribution mass on a confounder (e.g. a chest tube): does the map point at a shortcut?

A map's "positive mass" is the sum of its positive values (``Explanation.map`` is "larger =
more important"; signed maps keep only the evidence *for* the target). The share inside a
mask is the attribution-mass version of the "weighting game" / energy-based pointing game
(Wang et al., Score-CAM, 2020), applied here to a confounder instead of the finding: on a
chest-tube-only false positive for pneumothorax, a faithful map of a shortcut-using model
puts its mass on the tube.
"""

from __future__ import annotations

import numpy as np

from cfviewer.metrics._checks import as_map, as_mask


def positive_mass_share(attr_map: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's positive mass that lies inside ``mask``; NaN if the map has none."""
    a = as_map(attr_map)
    m = as_mask(mask, a.shape, allow_empty=True)
    pos = np.clip(a, 0.0, None)
    total = float(pos.sum())
    if total <= 0.0:
        return float("nan")
    return float(pos[m].sum() / total)


def confounder_mass(attr_map: np.ndarray, confounder_mask: np.ndarray) -> float:
    """Share of the map's positive mass on the confounder (1 = all of it on the tube)."""
    return positive_mass_share(attr_map, confounder_mask)


def confounder_mass_ratio(attr_map: np.ndarray, confounder_mask: np.ndarray) -> float:
    """Confounder mass divided by the confounder's share of the image (1 = no preference).

    Lets maps of different smoothness be compared: a uniform map scores 1 whatever the size
    of the tube.
    """
    a = as_map(attr_map)
    m = as_mask(confounder_mask, a.shape)
    return positive_mass_share(a, m) / float(m.mean())
