"""Explainers: one protocol, one registry (docs/ARCHITECTURE.md, "cfviewer.explain").

>>> from cfviewer.explain import get_explainer
>>> e = get_explainer("latentshift-max", bundle).explain(image, target="Cardiomegaly")

Methods: captum baselines (``gradient``, ``guided_backprop``, ``integrated_gradients``,
``gradcam``), Latent Shift (``latentshift`` + map aliases ``latentshift-max|mean|minmax|int``),
adversarial-path attribution (``adversarial_fi``, ``adversarial_diff``, ``adversarial_diff_x``;
pair from SAGen or Latent Shift), SAGen similar/adversarial generators (``sagen`` with eq. 11's
augmentation, ``sagen-single``; trained by ``cfviewer train-explainer sagen``) and augmentation
averaging (``get_explainer(name, bundle, augment=N)`` or ``"augmented"``).
Rendering (overlay, panel PNG, GIF, MP4) lives in :mod:`cfviewer.explain.render`; the
torch-free overlay the reader's viewer draws with lives in :mod:`cfviewer.explain.draw`.

The names below are imported from :mod:`cfviewer.explain.base` (which imports torch) on first
use, not when the package is imported: ``import cfviewer.explain.draw`` (the reader path)
must not load torch (tests/test_reader_torch_free.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Explainer",
    "ExplainerParameterError",
    "ExplainerParams",
    "Explanation",
    "RetiredParameterWarning",
    "get_explainer",
    "list_explainers",
    "register",
]

if TYPE_CHECKING:
    from cfviewer.explain.base import (  # noqa: F401
        Explainer,
        ExplainerParameterError,
        ExplainerParams,
        Explanation,
        RetiredParameterWarning,
        get_explainer,
        list_explainers,
        register,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cfviewer.explain import base

        value = getattr(base, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
