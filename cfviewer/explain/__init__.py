"""Explainers: one protocol, one registry (docs/ARCHITECTURE.md, "cfviewer.explain").

>>> from cfviewer.explain import get_explainer
>>> e = get_explainer("latentshift-max", bundle).explain(image, target="Cardiomegaly")

Methods: captum baselines (``gradient``, ``guided_backprop``, ``integrated_gradients``,
``gradcam``), Latent Shift (``latentshift`` + map aliases ``latentshift-max|mean|minmax|int``),
adversarial-path attribution (``adversarial_fi``, ``adversarial_diff``, ``adversarial_diff_x``)
and augmentation averaging (``get_explainer(name, bundle, augment=N)`` or ``"augmented"``).
Rendering (overlay, panel PNG, GIF, MP4) lives in :mod:`cfviewer.explain.render`.
"""

from cfviewer.explain.base import (
    Explainer,
    ExplainerParameterError,
    Explanation,
    get_explainer,
    list_explainers,
    register,
)

__all__ = [
    "Explainer",
    "ExplainerParameterError",
    "Explanation",
    "get_explainer",
    "list_explainers",
    "register",
]
