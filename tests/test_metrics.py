"""Explanation metrics on hand-made arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfviewer.errors import CfviewerError
from cfviewer.metrics import (
    MetricInputError,
    auc_loc,
    binarize_top_k,
    cascading_randomization,
    confounder_mass,
    confounder_mass_ratio,
    deletion_curves,
    hausdorff_distance,
    iou_at_percentiles,
    iou_top_p,
    layer_groups,
    localization_scores,
    make_baseline,
    pointing_game,
    random_map,
    rank_correlation,
    weak_localization,
)


def square_mask(size: int = 64, top: int = 20, left: int = 24, side: int = 16) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


# ---------------------------------------------------------------------- localisation
def test_perfect_map_scores_perfectly():
    mask = square_mask()
    scores = localization_scores(mask.astype(np.float32), mask)
    assert scores["iou_top_p"] == 1.0
    assert scores["auc_loc"] == 1.0
    assert scores["hausdorff"] == 0.0
    assert scores["weak_loc"] == 1.0
    assert scores["pointing"] == 1.0


def test_inverted_map_scores_zero():
    mask = square_mask()
    inv = (~mask).astype(np.float32)
    assert auc_loc(inv, mask) == 0.0
    assert iou_top_p(inv, mask) == 0.0
    assert not pointing_game(inv, mask)


def test_random_and_constant_maps_score_at_chance():
    mask = square_mask(size=96, side=30)
    rnd = np.random.default_rng(1).random(mask.shape)
    assert auc_loc(rnd, mask) == pytest.approx(0.5, abs=0.03)
    assert iou_top_p(rnd, mask) < 0.15
    assert auc_loc(np.zeros(mask.shape), mask) == 0.5
    # Ties are broken at random, not by raster order: a constant map is not rewarded for a
    # mask in the top rows.
    top_rows = np.zeros_like(mask)
    top_rows[:10] = True
    assert iou_top_p(np.zeros(mask.shape), top_rows) < 0.2


def test_auc_loc_matches_pairwise_definition():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, size=(12, 12)).astype(float)  # many ties
    mask = rng.random((12, 12)) < 0.3
    pos, neg = a[mask], a[~mask]
    diff = pos[:, None] - neg[None, :]
    expected = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert auc_loc(a, mask) == pytest.approx(expected)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_hausdorff_of_mask_shifted_by_k_pixels_is_k(k):
    mask = square_mask()
    shifted = np.roll(mask, k, axis=1).astype(np.float32)
    assert hausdorff_distance(shifted, mask) == pytest.approx(k)
    down = np.roll(mask, k, axis=0).astype(np.float32)
    assert hausdorff_distance(down, mask) == pytest.approx(k)


def test_iou_at_percentiles_and_top_k():
    mask = np.zeros((50, 50), dtype=bool)
    mask[:, :5] = True  # exactly 10 % of the pixels
    attr = mask + np.random.default_rng(0).random(mask.shape) * 1e-3
    ious = iou_at_percentiles(attr, mask)
    assert set(ious) == {80.0, 90.0, 95.0, 98.0}
    assert ious[90.0] == 1.0
    assert ious[80.0] == pytest.approx(0.5)  # 500 of 1000 kept pixels in the mask
    assert ious[95.0] == pytest.approx(0.5)  # 125 kept, all inside a 250-pixel mask
    assert binarize_top_k(attr, 17).sum() == 17


def test_weak_localization_and_pointing_game():
    mask = square_mask()
    yy, xx = np.mgrid[:64, :64]
    on = np.exp(-((yy - 27.5) ** 2 + (xx - 31.5) ** 2) / (2 * 6.0**2))
    off = np.exp(-((yy - 55) ** 2 + (xx - 5) ** 2) / (2 * 6.0**2))
    assert weak_localization(on, mask).hit
    res = weak_localization(off, mask)
    assert not res.hit and res.box_iou == 0.0
    near = np.zeros((64, 64))
    near[20, 21] = 1.0  # 3 px left of the mask
    assert not pointing_game(near, mask)
    assert pointing_game(near, mask, tolerance=3)


def test_metric_errors_are_user_errors():
    mask = square_mask()
    with pytest.raises(MetricInputError, match="shape"):
        iou_top_p(np.zeros((32, 32)), mask)
    with pytest.raises(CfviewerError, match="empty"):
        auc_loc(np.zeros((64, 64)), np.zeros((64, 64), bool))
    with pytest.raises(MetricInputError, match="NaN"):
        auc_loc(np.full((64, 64), np.nan), mask)


# ---------------------------------------------------------------------- faithfulness
def _region_model(region: np.ndarray):
    """Probability = mean brightness of `region`, rescaled from [-1024, 1024] to [0, 1]."""
    calls: list[int] = []

    def predict(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        p = (images[:, region].mean(axis=1) + 1024.0) / 2048.0
        return np.stack([1.0 - p, p], axis=1)

    return predict, calls


def test_aopc_of_decisive_map_beats_random():
    rng = np.random.default_rng(0)
    region = square_mask(size=32, top=8, left=8, side=8)
    images = rng.uniform(-600, 0, size=(5, 32, 32)).astype(np.float32)
    images[:, region] = 900.0
    predict, calls = _region_model(region)
    decisive = np.repeat(region[None].astype(np.float32), 5, axis=0)
    randoms = np.stack([random_map((32, 32), seed=i) for i in range(5)])
    good = deletion_curves(predict, images, decisive, [1] * 5, baseline="mean", batch_size=8)
    bad = deletion_curves(predict, images, randoms, [1] * 5, baseline="mean", batch_size=8)
    # Batched: 2 x 5 images x 11 steps, in batches of at most 8.
    assert max(calls) <= 8 and sum(calls) == 2 * 55
    assert np.all(good.aopc > bad.aopc + 0.1)
    assert np.all(good.auc < bad.auc)
    # Step 0 is the unperturbed score; at 100 % every pixel is the baseline (image mean).
    np.testing.assert_allclose(good.scores[:, 0], predict(images)[:, 1])
    means = images.reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(good.scores[:, -1], (means + 1024) / 2048, rtol=1e-5)


def test_deletion_baselines_and_errors():
    img = np.arange(16 * 16, dtype=np.float32).reshape(16, 16)
    assert np.allclose(make_baseline(img, "mean"), img.mean())
    assert np.allclose(make_baseline(img, -1024), -1024)
    blurred = make_baseline(img, "blur")
    assert blurred.shape == img.shape and blurred.std() < img.std()
    with pytest.raises(MetricInputError, match="baseline"):
        make_baseline(img, "noise")
    predict, _ = _region_model(np.ones((16, 16), bool))
    with pytest.raises(MetricInputError, match="fractions"):
        deletion_curves(predict, img, img, [1], fractions=[0.5, 1.0])


# ---------------------------------------------------------------------- sanity
def _input_gradient(bundle, images: np.ndarray, target: int) -> np.ndarray:
    x = bundle.preprocess(images).requires_grad_(True)
    bundle.classifier(x)[:, target].sum().backward()
    return x.grad[:, 0].abs().numpy()


def test_cascading_randomization_leaves_the_original_untouched():
    from cfviewer.models import random_bundle

    bundle = random_bundle(resolution=32, seed=0, autoencoder=False)
    before = {k: v.clone() for k, v in bundle.classifier.state_dict().items()}
    images = np.random.default_rng(0).uniform(-1024, 1024, size=(2, 32, 32)).astype(np.float32)
    p_before = bundle.predict(images)

    curve = cascading_randomization(bundle, lambda b: _input_gradient(b, images, 2), seed=1)

    after = bundle.classifier.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(bundle.predict(images), p_before)
    assert curve.steps[0] == "original" and curve.steps[1] == "fc"
    assert curve.steps[-1] == "stem.0"
    assert curve.correlations.shape == (len(curve.steps), 2)
    assert np.all(curve.correlations[0] == 1.0)
    # The gradient of a fully re-initialised network no longer matches the trained one.
    assert np.all(curve.full_reset < 0.9)


def test_model_independent_map_stays_correlated():
    from cfviewer.models import random_bundle

    bundle = random_bundle(resolution=32, seed=0, autoencoder=False)
    image = np.random.default_rng(0).random((32, 32))
    curve = cascading_randomization(bundle, lambda b: image * 2.0)  # ignores the model
    np.testing.assert_allclose(curve.correlations, 1.0)


def test_layer_groups_are_blocks_output_first():
    from cfviewer.models import random_bundle

    clf = random_bundle(resolution=32, seed=0, autoencoder=False).classifier
    groups = layer_groups(clf, torch.zeros(1, 1, 32, 32))
    names = [g for g, _ in groups]
    assert names == ["fc", "stages.3", "stages.2", "stages.1", "stages.0",
                     "stem.4", "stem.3", "stem.1", "stem.0"]
    assert "stages.1.0.shortcut.0" in dict(groups)["stages.1"]


def test_rank_correlation_uses_absolute_values():
    a = np.random.default_rng(0).normal(size=(8, 8))
    assert rank_correlation(a, -a) == pytest.approx(1.0)
    assert np.isnan(rank_correlation(a, np.zeros_like(a)))


# ---------------------------------------------------------------------- class sensitivity
# (score of a grid of four separately explained images: tests/test_class_sensitivity.py)


# ---------------------------------------------------------------------- confounders
def test_confounder_mass():
    tube = np.zeros((32, 32), bool)
    tube[5:25, 10:12] = True
    assert confounder_mass(tube.astype(float), tube) == 1.0
    assert confounder_mass((~tube).astype(float), tube) == 0.0
    assert confounder_mass(np.where(tube, 2.0, -1.0), tube) == 1.0
    assert np.isnan(confounder_mass(np.zeros((32, 32)), tube))
    assert confounder_mass_ratio(np.ones((32, 32)), tube) == pytest.approx(1.0)
