"""What the unchanged (lambda = 0) frame of an explanation's animation is, in words.

Every explainer with frames stores them by increasing lambda, the counterfactual first and
the unchanged frame at lambda = 0; what that frame *is* depends on the method:

* ``"reconstruction"``: the autoencoder's reconstruction D(E(x)) (Latent Shift, and
  ``adversarial_fi`` on a Latent Shift pair);
* ``"similar"``: the similar generator's image g_s(x) (SAGen, and ``adversarial_fi`` on a
  SAGen pair: its frames run on the straight path g_s(x) -> g_a(x));
* ``"image"``: the image itself (Attri-Net's x -> x + M_c(x), the inpainting explainers'
  x -> inpainted image).

The animation's frame headers (:func:`cfviewer.explain.render.frame_captions`) and the reader
page's slider caption (:func:`cfviewer.ui.reading.frame_caption`) both name it from here, so a
reader is never told "reconstruction" for a frame no autoencoder made. Torch-free: the reader's
page imports it.
"""

from __future__ import annotations

from typing import Any, Mapping

START_FRAMES: dict[str, dict[str, str]] = {
    "reconstruction": {"short": "reconstruction", "long": "the autoencoder's reconstruction",
                       "note": "the autoencoder's **reconstruction** (both shown)"},
    "similar": {"short": "similar image g_s(x)", "long": "the similar generator's image g_s(x)",
                "note": "the similar generator's image **g_s(x)** (both shown)"},
    "image": {"short": "the image", "long": "the image itself",
              "note": "the **original** image (this model has no autoencoder)"},
}


def check_start_frame(kind: str) -> str:
    if kind not in START_FRAMES:
        raise ValueError(f"start frame {kind!r}: use one of {', '.join(START_FRAMES)}")
    return kind


def start_frame_of(summary: Mapping[str, Any] | None) -> str:
    """The start-frame kind recorded in an explanation's summary (``Explanation.summary()``,
    or a precompute record that nests it under ``"explanation"``). Without one (records
    written before the field, or ``Explanation.start_frame`` None): the lambda = 0 frame is the
    reconstruction unless the explanation recorded no reconstruction probability
    (``pred_reconstruction`` null: Attri-Net, inpainting), in which case it is the image."""
    if not summary:
        return "reconstruction"
    summary = summary.get("explanation", summary)
    kind = summary.get("start_frame")
    if kind in START_FRAMES:
        return str(kind)
    if "pred_reconstruction" in summary and summary["pred_reconstruction"] is None:
        return "image"
    return "reconstruction"


__all__ = ["START_FRAMES", "check_start_frame", "start_frame_of"]
