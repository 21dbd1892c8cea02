"""Binary classification metrics for model evaluation: ROC AUC, Youden thresholds,
sensitivity / specificity. Plain numpy + scipy (no scikit-learn dependency)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos * n_neg), ties count one half).

    Returns NaN when one class is absent."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1.

    The threshold is placed halfway between the chosen score and the next lower distinct
    score (so ``score >= threshold`` reproduces the optimal split); 0.5 when a class is absent."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    # candidate cut after the last element of each run of equal scores
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    idx = np.flatnonzero(last_of_run)
    j = tp[idx] / n_pos - fp[idx] / n_neg
    best = idx[int(np.argmax(j))]
    upper = s_sorted[best]
    lower = s_sorted[best + 1] if best + 1 < s_sorted.size else upper - 1e-6
    return float((upper + lower) / 2.0)


def sensitivity_specificity(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[float, float]:
    """(sensitivity, specificity) of ``score >= threshold``; NaN for an absent class."""
    y = np.asarray(labels).astype(bool).ravel()
    pred = np.asarray(scores).ravel() >= threshold
    sens = float(pred[y].mean()) if y.any() else float("nan")
    spec = float((~pred[~y]).mean()) if (~y).any() else float("nan")
    return sens, spec


def platt_fit(labels: np.ndarray, logits: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """Platt scaling: (a, b) minimising the BCE of sigmoid(a * logit + b) against the labels
    (Platt 1999; the per-class logistic calibration of Guo et al. 2017's comparison), with
    Platt's smoothed targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2) so a separable split does
    not drive ``a`` to infinity. Newton's method on the two parameters; returns (1, 0) when a
    class has no positives or no negatives."""
    y = np.asarray(labels, np.float64).ravel()
    z = np.asarray(logits, np.float64).ravel()
    n_pos, n_neg = float((y > 0.5).sum()), float((y <= 0.5).sum())
    if n_pos == 0 or n_neg == 0:
        return 1.0, 0.0
    t = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    from scipy.optimize import minimize

    def nll(ab: np.ndarray) -> tuple[float, np.ndarray]:
        u = ab[0] * z + ab[1]
        # BCE with logits, stable: log(1 + e^u) - t u
        loss = np.logaddexp(0.0, u) - t * u
        r = 1.0 / (1.0 + np.exp(-u)) - t
        return float(loss.mean()), np.array([np.mean(r * z), np.mean(r)])

    res = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", options={"maxiter": iters})
    a, b = res.x
    return float(a), float(b)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins: sum over bins of (share of cases) x |mean prob - positive rate|."""
    y = np.asarray(labels, np.float64).ravel()
    p = np.asarray(probs, np.float64).ravel()
    idx = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for k in range(bins):
        sel = idx == k
        if sel.any():
            ece += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(ece)
