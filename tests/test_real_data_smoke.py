"""Real radiographs: every NIH1000 image loads through cfviewer.imaging, and the project's
training loop lowers the classifier's loss on them (normal vs abnormal, 64 px)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cfviewer import imaging
from cfviewer.models import Classifier
from cfviewer.models.data import TrainingData
from cfviewer.models.train import StageConfig, classifier_loss, fit


@pytest.fixture(scope="module")
def nih1000(shared_data):
    root = shared_data / "nih1000"
    rows = list(csv.DictReader(open(root / "labels.csv", newline="")))
    images = np.stack([imaging.load(root / r["path"]) for r in rows])
    labels = np.array([[1.0 if r["folder_label"] == "1_abnormal" else 0.0] for r in rows], np.float32)
    splits = np.array([r["split"] for r in rows])
    return images, labels, splits


def test_every_nih1000_image_loads_in_range(nih1000):
    images, labels, _ = nih1000
    assert images.shape == (1000, 64, 64) and images.dtype == np.float32
    assert images.min() >= -1024 and images.max() <= 1024
    assert images.std(axis=(1, 2)).min() > 0  # no blank image
    assert labels.sum() == 500


def test_classifier_loss_falls_on_real_radiographs(nih1000):
    images, labels, splits = nih1000
    train = splits == "train"
    # 128 training images, balanced; the loss on them before vs after a few epochs
    idx = np.r_[np.flatnonzero(train & (labels[:, 0] == 0))[:64], np.flatnonzero(train & (labels[:, 0] == 1))[:64]]
    data = TrainingData(torch.from_numpy(images[idx]).half(), torch.from_numpy(labels[idx]))
    torch.manual_seed(0)
    model = Classifier(pathologies=["abnormal"], widths=(16, 32, 32, 64), stem_width=16, dropout=0.0)

    def bce() -> float:
        model.eval()
        with torch.no_grad():
            return float(F.binary_cross_entropy(model(data.images.float()[:, None]), data.labels))

    result = fit(model, classifier_loss, data, StageConfig(epochs=6, batch_size=32, lr=3e-3, warmup_fraction=0.1),
                 stage="smoke", seed=0, device=torch.device("cpu"), use_augment=False, progress=False)
    # fit() leaves the model trained; compare with a fresh copy of the initial weights
    after = bce()
    torch.manual_seed(0)
    model = Classifier(pathologies=["abnormal"], widths=(16, 32, 32, 64), stem_width=16, dropout=0.0)
    model.train()
    with torch.no_grad():  # BN statistics of the data, no weight change
        model(data.images.float()[:, None])
    before = bce()
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert after < before
