"""Class sensitivity of a 2 x 2 grid of explanations (Sun et al., Attri-Net, MIDL 2023, section 3,
following Böhle et al. 2021).

A grid holds four images: one true positive of the model for the class being explained and
three true negatives. Each image is explained on its own (for the class); the grid's score is
the share of the total absolute attribution of the four maps that lies on the positive image:
1 when only the positive's map has attribution, 0.25 when the four carry equal mass (chance),
0 by convention when all four maps are zero (as in the reference code,
``evaluations/eval_class_sensitivity.py``). The grid itself is built by
:func:`cfviewer.evaluation.cases.make_grids`; this module only scores maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cfviewer.metrics._checks import MetricInputError, as_map

GRID_IMAGES = 4
"""Images in a 2 x 2 class-sensitivity grid: one positive, three negatives."""


@dataclass(frozen=True)
class ClassSensitivity:
    share: float
    """Sum |map| over the positive image / sum |map| over all four (0.25 = chance; 0 when all
    four maps are zero)."""
    positive_largest: bool
    """The positive image's total |map| is strictly larger than each negative's (ties: False)."""
    totals: tuple[float, ...]
    """Sum |map| of each of the four images, in the order given."""


def class_sensitivity_score(maps: Sequence[np.ndarray], positive_index: int = 0) -> ClassSensitivity:
    """Score the four maps of one grid; ``maps[positive_index]`` is the positive image's map.

    ``maps``: four 2D attribution maps of one shape (a list, or a 4 x H x W array), each
    explaining its own image for the grid's class."""
    if isinstance(maps, np.ndarray) and maps.ndim != 3:
        raise MetricInputError(
            f"class sensitivity needs the 4 maps of a 2 x 2 grid as a list or a 4 x H x W array, "
            f"got an array of shape {maps.shape}"
        )
    maps = list(maps)
    if len(maps) != GRID_IMAGES:
        raise MetricInputError(
            f"class sensitivity needs the maps of the {GRID_IMAGES} images of a 2 x 2 grid "
            f"(one positive, three negatives), got {len(maps)}"
        )
    if isinstance(positive_index, bool) or not isinstance(positive_index, (int, np.integer)) \
            or not 0 <= int(positive_index) < GRID_IMAGES:
        raise MetricInputError(
            f"positive_index={positive_index!r} must be the index (0-{GRID_IMAGES - 1}) of the "
            "positive image's map"
        )
    arrs = [as_map(m, name=f"map {i} of the grid") for i, m in enumerate(maps)]
    shapes = [a.shape for a in arrs]
    if len(set(shapes)) != 1:
        raise MetricInputError(
            f"the four maps of a grid must have one shape (each image explained at the model's "
            f"resolution), got {shapes}"
        )
    pos = int(positive_index)
    totals = np.array([np.abs(a).sum() for a in arrs], dtype=np.float64)
    total = float(totals.sum())
    share = float(totals[pos] / total) if total > 0 else 0.0
    largest = bool(totals[pos] > np.delete(totals, pos).max())
    return ClassSensitivity(share=share, positive_largest=largest,
                            totals=tuple(float(t) for t in totals))
