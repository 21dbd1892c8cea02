"""Class sensitivity on 2 x 2 grids (Sun et al., Attri-Net, MIDL 2023).

Four images are tiled into a 2 x 2 grid in which exactly one image is positive for the class
being explained; a class-sensitive explanation puts its (positive) attribution on that cell.
The score is the share of the map's positive mass inside the positive cell (the grid
pointing game of Böhle et al. / Rao et al. that Attri-Net reuses), together with whether the
map's maximum lies there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cfviewer.metrics._checks import MetricInputError, as_map
from cfviewer.metrics.confounders import positive_mass_share

CELLS = ("top-left", "top-right", "bottom-left", "bottom-right")


def make_grid(images: Sequence[np.ndarray]) -> np.ndarray:
    """Tile four equally shaped H x W images into a 2H x 2W grid (row-major, see CELLS)."""
    if len(images) != 4:
        raise MetricInputError(f"a class-sensitivity grid needs 4 images, got {len(images)}")
    arrs = [np.asarray(i) for i in images]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1 or arrs[0].ndim != 2:
        raise MetricInputError(f"grid images must be 2D with one shape, got {sorted(shapes)}")
    return np.block([[arrs[0], arrs[1]], [arrs[2], arrs[3]]])


def grid_cell_masks(shape: tuple[int, int]) -> list[np.ndarray]:
    """Bool masks of the four cells of a grid of ``shape`` (odd sides: the extra row/column
    goes to the bottom/right cells)."""
    h, w = shape
    h2, w2 = h // 2, w // 2
    masks = []
    for r, c in ((0, 0), (0, 1), (1, 0), (1, 1)):
        m = np.zeros(shape, dtype=bool)
        m[(h2 if r else 0):(h if r else h2), (w2 if c else 0):(w if c else w2)] = True
        masks.append(m)
    return masks


@dataclass(frozen=True)
class ClassSensitivity:
    mass_share: float
    """Share of the positive attribution mass in the positive cell (0.25 = no preference)."""
    max_in_cell: bool


def class_sensitivity(attr_map: np.ndarray, positive_cell: int) -> ClassSensitivity:
    """Score a map of a 2 x 2 grid whose cell ``positive_cell`` (0-3) holds the positive."""
    a = as_map(attr_map)
    if positive_cell not in (0, 1, 2, 3):
        raise MetricInputError(f"positive_cell={positive_cell} must be 0, 1, 2 or 3 ({CELLS})")
    cell = grid_cell_masks(a.shape)[positive_cell]
    return ClassSensitivity(
        mass_share=positive_mass_share(a, cell),
        max_in_cell=bool(cell.ravel()[int(np.argmax(a))]),
    )
