"""Robust classifier training (L2 adversary, label smoothing), Platt calibration and the
counterfactual metric: the pieces issue 10's demo models are built from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfviewer.metrics.counterfactual import counterfactual_change, dilate_mask, summarise
from cfviewer.models import Bundle
from cfviewer.models.classifier import Classifier
from cfviewer.models.data import phantom_data
from cfviewer.models.evaluation import expected_calibration_error, platt_fit
from cfviewer.models.train import (
    TrainConfig,
    TrainConfigError,
    l2_adversary,
    robust_classifier_loss,
    run_training,
)
from tests.test_train import TINY


def test_l2_adversary_stays_in_the_ball_and_raises_the_loss():
    torch.manual_seed(0)
    clf = Classifier(widths=[8, 8], blocks=[1, 1], stem_width=8).eval()
    x = torch.rand(4, 1, 32, 32) * 1000 - 500
    y = torch.ones(4, 6)
    for steps in (1, 3):
        xa = l2_adversary(clf, x, y, epsilon_rms=8.0, steps=steps)
        norms = (xa - x).flatten(1).norm(dim=1)
        assert torch.all(norms <= 8.0 * 32 + 1e-3)
        assert torch.all(norms > 0.5 * 8.0 * 32)  # the budget is used
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        assert bce(clf.logits(xa), y) > bce(clf.logits(x), y)
    assert l2_adversary(clf, x, y, 0.0) is x


def test_robust_loss_smooths_labels_and_mixes_adversarial_term():
    torch.manual_seed(0)
    clf = Classifier(widths=[8, 8], blocks=[1, 1], stem_width=8).eval()
    x = torch.rand(4, 1, 32, 32) * 1000 - 500
    y = torch.tensor([[1.0, 0, 1, 0, 1, 0]] * 4)
    plain = robust_classifier_loss()(clf, x, y)
    smooth = robust_classifier_loss(0.1)(clf, x, y)
    t = y * 0.9 + 0.05
    assert torch.isclose(smooth, torch.nn.functional.binary_cross_entropy_with_logits(clf.logits(x), t))
    assert not torch.isclose(plain, smooth)
    adv = robust_classifier_loss(0.0, {"epsilon": 16.0})(clf, x, y)
    assert adv > plain  # half of it is the loss at the worst-case neighbour


def test_config_rejects_bad_robustness_settings():
    with pytest.raises(TrainConfigError, match="adversarial: unknown key"):
        TrainConfig.from_dict({**TINY, "adversarial": {"eps": 1}})
    with pytest.raises(TrainConfigError, match="label_smoothing"):
        TrainConfig.from_dict({**TINY, "label_smoothing": 1.5})
    with pytest.raises(TrainConfigError, match="calibration"):
        TrainConfig.from_dict({**TINY, "calibration": "isotonic"})


def test_platt_fit_recovers_a_known_calibration_and_lowers_ece():
    rng = np.random.default_rng(0)
    z_true = rng.normal(0, 2, 20000)
    y = (rng.random(z_true.size) < 1 / (1 + np.exp(-z_true))).astype(float)
    overconfident = 3.0 * z_true + 1.0  # a classifier whose logits are 3x too large, shifted
    a, b = platt_fit(y, overconfident)
    assert a == pytest.approx(1 / 3, rel=0.05) and b == pytest.approx(-1 / 3, abs=0.05)
    before = expected_calibration_error(y, 1 / (1 + np.exp(-overconfident)))
    after = expected_calibration_error(y, 1 / (1 + np.exp(-(a * overconfident + b))))
    assert after < 0.02 < before
    assert platt_fit(np.zeros(10), np.arange(10.0)) == (1.0, 0.0)


def test_training_with_adversary_and_platt_writes_a_calibrated_bundle(tmp_path):
    data = (phantom_data(64, 11, 32, progress=False), phantom_data(32, 12, 32, progress=False))
    cfg = TrainConfig.from_dict({**TINY, "label_smoothing": 0.05, "adversarial": {"epsilon": 4.0},
                                 "calibration": "platt"})
    bundle = run_training(cfg, tmp_path / "out", work_dir=tmp_path / "work", progress=False,
                          data=data, device="cpu", log=lambda s: None)
    cal = bundle.meta["training"]["calibration"]
    assert cal["method"] == "platt" and set(cal["per_pathology"]) == set(bundle.pathologies)
    assert all(v["a"] > 0 for v in cal["per_pathology"].values())
    # the fold into the last layer survives saving: the loaded bundle predicts the same
    loaded = Bundle.load(tmp_path / "out", device="cpu")
    x = data[1].images[:4].float().numpy()
    np.testing.assert_allclose(loaded.predict(x), bundle.predict(x), rtol=1e-5, atol=1e-6)


def test_counterfactual_change_separates_a_local_edit_from_a_global_one():
    start = np.zeros((64, 64), np.float32)
    mask = np.zeros((64, 64), bool)
    mask[20:30, 20:30] = True
    local = start.copy()
    local[mask] = -200.0  # the finding fades: 25 grey levels inside, nothing outside
    s = counterfactual_change(start, local, mask, 0.9, 0.2)
    assert s.share_inside == pytest.approx(1.0) and s.mean_inside == pytest.approx(200 * 255 / 2048)
    assert s.visible
    spread = start + 30.0  # the same prediction drop by a faint change everywhere
    g = counterfactual_change(start, spread, mask, 0.9, 0.2)
    assert g.share_inside < 0.1 and not g.visible
    weak = counterfactual_change(start, local, mask, 0.9, 0.8)  # the prediction barely moves
    assert not weak.visible
    assert summarise([s, g, weak])["visible_rate"] == pytest.approx(1 / 3)
    assert dilate_mask(mask, 0.04).sum() > mask.sum()
    with pytest.raises(ValueError, match="empty"):
        counterfactual_change(start, local, np.zeros_like(mask), 0.9, 0.2)


def test_a_shrinking_heart_is_scored_on_its_border():
    from cfviewer.metrics.counterfactual import evidence_region

    yy, xx = np.mgrid[:128, :128]
    big = (yy - 80) ** 2 + (xx - 64) ** 2 <= 30 ** 2
    small = (yy - 80) ** 2 + (xx - 64) ** 2 <= 25 ** 2
    start = np.where(big, 75.0, -75.0).astype(np.float32)     # heart vs lung: 19 grey levels
    shrunk = np.where(small, 75.0, -75.0).astype(np.float32)  # the border moves in by 5 px
    whole = counterfactual_change(start, shrunk, big, 0.9, 0.3)
    border = counterfactual_change(start, shrunk, big, 0.9, 0.3, target="Cardiomegaly")
    assert whole.share_inside == border.share_inside == pytest.approx(1.0)
    assert whole.mean_inside < 8 <= border.mean_inside           # diluted by the interior vs seen
    assert border.visible and not whole.visible
    band = evidence_region(big, "Cardiomegaly")
    assert band.sum() < big.sum() and not band[80, 64]           # the interior is not evidence
    assert evidence_region(big, "Mass") is not None and evidence_region(big, "Mass").sum() == big.sum()
