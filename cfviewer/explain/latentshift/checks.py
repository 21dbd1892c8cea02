"""Honesty checks of Latent Shift outputs: what the frames do not show.

The paper's appendix K: the autoencoder alone lowers the prediction (by 0.12 on average for
positives there), and every frame is decoded from the latent, so the animation starts at the
reconstruction D(E(x)), not at x. :func:`decision_record` / :func:`flips_decision` record
whether the reconstruction is on the other side of the bundle's threshold;
:func:`frame_warnings` says when the frames are not the path they claim to be (the prediction
rises along frames meant to lower it, a frame leaves the search's pixel or lambda limits, or
saturates the pixel range). Sentences go to ``params["warnings"]`` of an explanation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# ---------------------------------------------------------------------- honesty checks
RISE_TOLERANCE = 0.01
"""A frame's prediction may move against the path's direction by this much (probability)
before :func:`frame_warnings` warns."""
CLIP_LEVEL = 1023.0
"""|pixel| >= this counts as at the [-1024, 1024] limits (the decoder's 1024 tanh saturates
there; other decoders may overshoot it and are clipped by the model input)."""
CLIP_SHARE = 0.01
"""Warn when a frame has this share of its pixels more at the limits than the reconstruction."""


def flips_decision(pred_original: float, pred_reconstruction: float, threshold: float) -> bool:
    """True when the reconstruction D(E(x)) is on the other side of ``threshold`` from the
    original x (positive = p >= threshold, as :meth:`Bundle.positive`): the autoencoder alone
    changes the model's decision (Latent Shift paper, appendix K)."""
    return bool((float(pred_original) >= threshold) != (float(pred_reconstruction) >= threshold))


def decision_record(pred_original: float, pred_reconstruction: float, threshold: float) -> dict[str, Any]:
    """``params["decision"]`` of a Latent Shift explanation."""
    return {
        "threshold": float(threshold),
        "original_positive": bool(pred_original >= threshold),
        "reconstruction_positive": bool(pred_reconstruction >= threshold),
        "autoencoder_flips_decision": flips_decision(pred_original, pred_reconstruction, threshold),
    }


def decision_warning(decision: dict[str, Any], pred_original: float, pred_reconstruction: float) -> str:
    side = {True: "positive", False: "negative"}
    return (
        f"the autoencoder alone flips the decision: the original is {side[decision['original_positive']]} "
        f"(p = {pred_original:.3f}) but its reconstruction, where every frame starts, is "
        f"{side[decision['reconstruction_positive']]} (p = {pred_reconstruction:.3f}) at the bundle's "
        f"threshold {decision['threshold']:.3f}; the frames explain the reconstruction's decision, "
        "not the original's (Latent Shift paper, appendix K)"
    )


def explanation_flips_decision(explanation: Any) -> bool:
    """Whether an :class:`Explanation` (or its ``summary()`` dict) is flagged: the autoencoder
    alone flips the decision. False when it records no decision (no autoencoder)."""
    params = explanation.get("params", {}) if isinstance(explanation, dict) else explanation.params
    return bool(((params or {}).get("decision") or {}).get("autoencoder_flips_decision", False))


def frame_warnings(
    frames: np.ndarray,
    lambdas: np.ndarray,
    preds: np.ndarray,
    *,
    max_pixel_diff_pct: float = 0.05,
    max_lambda: float = 3000.0,
    rise_tolerance: float = RISE_TOLERANCE,
    clip_share: float = CLIP_SHARE,
) -> list[str]:
    """What is wrong with a set of frames (sorted by lambda, x_0 = the lambda = 0 frame), as
    sentences for ``params["warnings"]`` (empty: nothing found):

    * along lambda = 0 -> the lower bound (meant to lower the prediction) a frame's prediction
      rises by more than ``rise_tolerance`` over the previous one, or the counterfactual ends
      higher than the reconstruction (and the mirror image for the frames above lambda 0);
    * a frame changes the image by more than the search's pixel limit,
      sum |x_0 - x| > ``max_pixel_diff_pct`` sum |x_0|, or lies beyond ``max_lambda``;
    * a frame has ``clip_share`` of its pixels more at the [-1024, 1024] limits than x_0
      (|x| >= :data:`CLIP_LEVEL`: saturated black-and-white blobs)."""
    frames = np.asarray(frames, dtype=np.float64)
    lambdas = np.asarray(lambdas, dtype=np.float64)
    preds = np.asarray(preds, dtype=np.float64)
    out: list[str] = []
    if len(frames) == 0:
        return out
    i0 = int(np.argmin(np.abs(lambdas)))
    x0 = frames[i0]
    for sign, what in ((-1, "lower"), (1, "raise")):
        # this direction's frames, from lambda = 0 outwards
        idx = sorted((i for i in range(len(lambdas)) if lambdas[i] * sign >= 0), key=lambda i: abs(lambdas[i]))
        if len(idx) < 2 or not np.isfinite(preds[idx]).all():
            continue
        path = preds[idx]
        against = -sign * np.diff(path)  # > 0: the prediction moves the wrong way
        k = int(np.argmax(against))
        if against[k] > rise_tolerance:
            verb = "rises" if sign < 0 else "falls"
            step = (f"{path[k]:.3f} -> {path[k + 1]:.3f} (lambda {lambdas[idx[k]]:.4g} -> "
                    f"{lambdas[idx[k + 1]]:.4g}; tolerance {rise_tolerance:g})")
            ends = (f"p = {path[0]:.3f} at lambda = 0 to {path[-1]:.3f} at lambda = "
                    f"{lambdas[idx[-1]]:.4g}")
            if -sign * (path[-1] - path[0]) > rise_tolerance:
                out.append(f"the prediction {verb} along the frames meant to {what} it: from {ends}, "
                           f"largest step {step}: these frames are not a path that {what}s it")
            else:
                out.append(f"the prediction {verb} between frames meant to {what} it: {step}, although "
                           f"it goes from {ends}: the path is not monotone")
    pixel_sum = float(np.abs(x0).sum())
    diffs = np.abs(frames - x0).sum(axis=(1, 2))
    k = int(np.argmax(diffs))
    if pixel_sum > 0 and diffs[k] > pixel_sum * max_pixel_diff_pct * (1 + 1e-6):
        out.append(
            f"the image leaves the search limits: the frame at lambda = {lambdas[k]:.4g} changes it by "
            f"{100 * diffs[k] / pixel_sum:.1f} % of sum |x_0| (the search stops at "
            f"{100 * max_pixel_diff_pct:g} %, search_max_pixel_diff_pct)"
        )
    if np.abs(lambdas).max() > max_lambda:
        out.append(
            f"the frames reach |lambda| = {np.abs(lambdas).max():.4g}, beyond the search limit "
            f"search_max_lambda = {max_lambda:g}"
        )
    at_limit = (np.abs(frames) >= CLIP_LEVEL).mean(axis=(1, 2))
    extra = at_limit - at_limit[i0]
    k = int(np.argmax(extra))
    if extra[k] > clip_share:
        out.append(
            f"the image leaves the pixel range: at lambda = {lambdas[k]:.4g} {100 * at_limit[k]:.1f} % of "
            f"the pixels are at the [-1024, 1024] limits against {100 * at_limit[i0]:.1f} % in the "
            "reconstruction (the decoder saturates: black and white blobs, not anatomy)"
        )
    return out
