"""Phantom frontal chest radiographs with pixel-exact ground truth.

`generate(seed)` draws one PA chest radiograph (float32 HxW in [-1024, 1024], bright = dense,
torchxrayvision's convention) with labels for the six pathologies of cfviewer.PATHOLOGIES, a
bool mask per finding present, and confounders (chest tube correlated with Pneumothorax,
laterality marker) with their masks. Modules: raster (drawing helpers), anatomy (normal chest),
findings (pathologies), mimics (normal things that look like findings), confounders, generator
(generate / generate_batch), dataset (files).

PhantomConfig.clinical() turns on the opt-in realism (mimics, label noise, AP and low-inspiration
films, collimation, burned-in text, detailed anatomy, subtle findings); without it the output is
the plain phantom, bit for bit.
"""

from cfviewer.phantoms.confounders import CONFOUNDERS
from cfviewer.phantoms.generator import (
    Phantom,
    PhantomBatch,
    PhantomConfig,
    PhantomConfigError,
    generate,
    generate_batch,
    image_seeds,
    iter_phantoms,
)

__all__ = [
    "CONFOUNDERS",
    "Phantom",
    "PhantomBatch",
    "PhantomConfig",
    "PhantomConfigError",
    "generate",
    "generate_batch",
    "image_seeds",
    "iter_phantoms",
    "write_dataset",
]


def __getattr__(name: str):
    if name == "write_dataset":  # imports imaging (pydicom) only when files are written
        from cfviewer.phantoms.dataset import write_dataset

        return write_dataset
    raise AttributeError(name)
