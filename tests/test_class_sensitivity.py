"""Class sensitivity with the Attri-Net reference protocol (Sun et al., MIDL 2023): the score of
a grid of four separately explained images, and the grids the benchmark makes from the model's
own most confident true positives and true negatives."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cfviewer import PATHOLOGIES
from cfviewer.evaluation import questions as Q
from cfviewer.evaluation.cases import (
    BENCH_TAG,
    GridPool,
    PhantomSource,
    bench_seeds,
    grid_pool_sizes,
    make_grids,
    select_grids,
)
from cfviewer.metrics import MetricInputError, class_sensitivity_score


# ---------------------------------------------------------------------- the score
def test_score_of_a_grid_of_four_maps():
    z = np.zeros((8, 8))
    hot = np.zeros((8, 8))
    hot[2:4, 2:4] = -3.0  # |map|: negative attribution is attribution too
    res = class_sensitivity_score([hot, z, z, z])
    assert res.share == 1.0 and res.positive_largest
    assert res.totals == (12.0, 0.0, 0.0, 0.0)

    same = class_sensitivity_score([np.ones((8, 8))] * 4, positive_index=2)
    assert same.share == pytest.approx(0.25)
    assert not same.positive_largest  # a tie is not "the largest"

    res = class_sensitivity_score(np.stack([z, hot, z, z]), positive_index=0)  # 4 x H x W array
    assert res.share == 0.0 and not res.positive_largest
    res = class_sensitivity_score([z, 3 * np.ones((8, 8)), np.ones((8, 8)), z], positive_index=2)
    assert res.share == pytest.approx(0.25) and not res.positive_largest

    empty = class_sensitivity_score([z, z, z, z])
    assert empty.share == 0.0 and not empty.positive_largest


def test_score_refuses_what_is_not_a_grid():
    m = np.ones((8, 8))
    with pytest.raises(MetricInputError, match="4 images of a 2 x 2 grid.*got 3"):
        class_sensitivity_score([m, m, m])
    with pytest.raises(MetricInputError, match="got 5"):
        class_sensitivity_score([m] * 5)
    with pytest.raises(MetricInputError, match="4 x H x W array, got an array of shape"):
        class_sensitivity_score(m)
    with pytest.raises(MetricInputError, match="positive_index=4"):
        class_sensitivity_score([m] * 4, positive_index=4)
    with pytest.raises(MetricInputError, match="one shape"):
        class_sensitivity_score([m, m, m, np.ones((4, 4))])
    with pytest.raises(MetricInputError, match="map 1 of the grid contains NaN"):
        class_sensitivity_score([m, np.full((8, 8), np.nan), m, m])


# ---------------------------------------------------------------------- grid selection
def test_select_grids_takes_most_confident_tps_and_tns():
    pos = [0.6, 0.95, 0.2, 0.8, 0.5]          # TPs (>= 0.5): 1 (0.95), 3 (0.8), 0 (0.6), 4 (0.5)
    neg = [0.1, 0.7, 0.01, 0.3, 0.05, 0.02, 0.4, 0.2, 0.9]  # TNs: 2, 5, 4, 0, 7, 3, 6
    grids, n_tp, n_tn = select_grids(pos, neg, 0.5, 2, np.random.default_rng(0))
    assert (n_tp, n_tn) == (4, 7)
    assert [g[0] for g in grids] == [1, 3]
    dealt = [i for _, negs in grids for i in negs]
    assert sorted(dealt) == [0, 2, 3, 4, 5, 7]  # the 6 most confident negatives, 3 per grid
    assert all(len(negs) == 3 for _, negs in grids)
    # the shuffle is the seeded one: same rng seed, same deal
    again, _, _ = select_grids(pos, neg, 0.5, 2, np.random.default_rng(0))
    assert again == grids

    # shortfalls: fewer TPs, or fewer than 3 TNs per grid; NaN is neither
    grids, n_tp, _ = select_grids([0.9, np.nan, 0.1], neg, 0.5, 5, np.random.default_rng(0))
    assert n_tp == 1 and [g[0] for g in grids] == [0]
    grids, _, n_tn = select_grids(pos, [0.1, 0.2, 0.9, 0.3, 0.4], 0.5, 3, np.random.default_rng(0))
    assert n_tn == 4 and len(grids) == 1 and sorted(grids[0][1]) == [0, 1, 3]
    assert select_grids([0.1], [0.0] * 6, 0.5, 2, np.random.default_rng(0))[0] == []


class _CodedSource:
    """A stand-in PhantomSource: image value = the seed's position in the grids' stream-2 seeds
    + 0.5 for a forced-positive render, so the fake model below can read which it got."""

    def __init__(self, seeds):
        self.index = {int(s): i for i, s in enumerate(seeds)}
        self.calls = []

    def render(self, seed, labels=None, **kw):
        (p, v), = labels.items()
        self.calls.append((int(seed), p, v))
        image = np.full((8, 8), self.index[int(seed)] + 0.5 * v, dtype=np.float32)
        masks = {p: np.ones((8, 8), bool)} if v else {}
        return image, masks


def _coded_bundle(prob_of, pathologies=("Cardiomegaly", "Mass")):
    def predict(images):
        images = np.asarray(images)
        codes = images[:, 0, 0]
        return np.array([[prob_of(p, float(c)) for p in pathologies] for c in codes], np.float32)

    return SimpleNamespace(pathologies=list(pathologies), resolution=8,
                           thresholds={p: 0.5 for p in pathologies}, predict=predict,
                           target_index=list(pathologies).index)


def test_make_grids_picks_the_models_most_confident_tp_and_tns():
    per = 2
    n_pos, n_neg = grid_pool_sizes(per)
    assert (n_pos, n_neg) == (12, 24)  # 4 x (2 positives, 6 negatives), at least 12 each
    block = n_pos + n_neg
    seeds = bench_seeds(len(PATHOLOGIES) * block, 7, 2)
    src = _CodedSource(seeds)
    k = PATHOLOGIES.index("Mass")

    def prob_of(p, code):
        pos = code % 1 == 0.5
        i = int(code) - PATHOLOGIES.index(p) * block  # candidate index within p's block
        if not 0 <= i < block:
            return 0.5  # another pathology's candidate: never asked for this column
        if p == "Mass":
            # positives: only candidates 3 and 7 are called positive, 7 the more confident;
            # negatives: all called negative, the later the more confident
            return {3: 0.6, 7: 0.9}.get(i, 0.1) if pos else 0.4 - 0.01 * (i - n_pos)
        return 0.2 if pos else 0.1  # Cardiomegaly: no true positive at all

    bundle = _coded_bundle(prob_of)
    grids, pools = make_grids(bundle, per, seed=7, source=src, batch=5)

    # candidates: stream 2, a fixed block per pathology; positives forced 1, negatives 0
    mass_calls = [c for c in src.calls if c[1] == "Mass"]
    assert mass_calls == ([(int(s), "Mass", 1) for s in seeds[k * block : k * block + n_pos]]
                          + [(int(s), "Mass", 0) for s in seeds[k * block + n_pos : (k + 1) * block]])

    assert [g.target for g in grids] == ["Mass", "Mass"]
    tp_idx = [int(g.cases[0].image[0, 0]) - k * block for g in grids]
    assert tp_idx == [7, 3]  # most confident first
    assert [g.probs[0] for g in grids] == pytest.approx([0.9, 0.6])
    tn_idx = sorted(int(c.image[0, 0]) - k * block - n_pos for g in grids for c in g.cases[1:])
    assert tn_idx == list(range(n_neg - 6, n_neg))  # the 6 lowest probabilities
    for j, g in enumerate(grids):
        assert g.positive_index == 0 and len(g.cases) == 4
        assert [c.uid for c in g.cases] == [f"grid{j}.{q}" for q in range(4)]
        assert all(c.target == "Mass" for c in g.cases)
        assert g.cases[0].mask.any() and not any(c.mask.any() for c in g.cases[1:])
        assert all(p < 0.5 for p in g.probs[1:])
    # the deal is the seeded shuffle of stream 3
    rng = np.random.default_rng(np.random.SeedSequence([7, BENCH_TAG, 3, k]))
    dealt = np.arange(n_neg - 1, n_neg - 7, -1)
    rng.shuffle(dealt)
    assert [int(c.image[0, 0]) - k * block - n_pos for g in grids for c in g.cases[1:]] == dealt.tolist()

    # shortfall: reported, not raised
    assert pools["Mass"] == GridPool("Mass", per, n_pos, n_neg, 2, n_neg, 2, 0.5)
    cardio = pools["Cardiomegaly"]
    assert cardio.grids == 0 and cardio.true_positives == 0 and cardio.shortfall == 2
    assert cardio.reason() == "threshold 0.50: 0 true positives among 12 positive candidates"
    assert pools["Mass"].reason() == ""

    assert make_grids(bundle, 0, seed=7, source=src) == ([], {})


def test_make_grids_renders_held_out_phantoms_at_full_resolution(monkeypatch):
    """With the real phantom source and a random bundle whose predict is replaced: the grid
    images are the stream-2 renders at the model's resolution, and the TP is the most
    confident of the positive candidates."""
    from cfviewer.models.bundle import random_bundle

    bundle = random_bundle(resolution=64, seed=0, autoencoder=False)
    col = bundle.target_index("Effusion")

    def predict(images, batch_size=32):  # a "probability" that is a function of the image only
        x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        p = np.full((len(x), len(bundle.pathologies)), 0.1, np.float32)
        sd = x.std(axis=1)
        p[:, col] = sd / (sd + 1000.0)
        return p

    monkeypatch.setattr(bundle, "predict", predict)
    source = PhantomSource.for_bundle(bundle)
    n_pos, n_neg = grid_pool_sizes(1)
    k = PATHOLOGIES.index("Effusion")
    block = n_pos + n_neg
    seeds = bench_seeds(len(PATHOLOGIES) * block, 0, 2)[k * block : (k + 1) * block]
    positives = [source.render(int(s), labels={"Effusion": 1})[0] for s in seeds[:n_pos]]
    negatives = [source.render(int(s), labels={"Effusion": 0})[0] for s in seeds[n_pos:]]
    probs = predict(np.stack(positives))[:, col]
    neg_probs = predict(np.stack(negatives))[:, col]
    thr = float(np.median(probs))
    assert np.sum(neg_probs < thr) >= 3  # this seed has enough true negatives (deterministic)
    # Effusion at the positives' median; the other pathologies have no true positive at all
    bundle.thresholds = {p: (thr if p == "Effusion" else 0.99) for p in bundle.pathologies}

    grids, pools = make_grids(bundle, 1, seed=0, source=source)
    assert set(pools) == set(PATHOLOGIES)
    assert all(pools[p].grids == 0 and pools[p].shortfall == 1 for p in PATHOLOGIES if p != "Effusion")
    assert [g.target for g in grids] == ["Effusion"]
    g = grids[0]
    assert all(c.image.shape == (64, 64) for c in g.cases)  # the model's full resolution
    np.testing.assert_array_equal(g.cases[0].image, positives[int(np.argmax(probs))])
    best3 = {int(i) for i in np.argsort(neg_probs, kind="stable")[:3]}
    found = {next(i for i, n in enumerate(negatives) if np.array_equal(n, c.image)) for c in g.cases[1:]}
    assert found == best3
    assert pools["Effusion"].true_positives == int(np.sum(probs >= thr))


# ---------------------------------------------------------------------- the question
def test_class_specificity_scores_each_grid_from_its_four_maps():
    from cfviewer.evaluation.cases import Case, Grid

    def grid(target):
        cases = [Case(uid=f"{target}{q}", seed=q, target=target, image=np.zeros((4, 4)),
                      mask=np.zeros((4, 4), bool)) for q in range(4)]
        return Grid(uid=target, target=target, cases=cases, probs=[0.9, 0.1, 0.1, 0.1])

    grids = [grid("Mass"), grid("Effusion"), grid("Mass")]
    one, z = np.ones((4, 4)), np.zeros((4, 4))
    maps = np.stack([one, z, z, z, one, one, one, one, z, one, z, z])
    cs = Q.class_specificity(maps, grids)
    np.testing.assert_allclose(cs.share, [1.0, 0.25, 0.0])
    np.testing.assert_array_equal(cs.tp_largest, [1.0, 0.0, 0.0])
    assert cs.by_pathology() == pytest.approx({"Mass": 0.5, "Effusion": 0.25, "all": 1.25 / 3})
    with pytest.raises(ValueError, match="11 maps for 3 grids"):
        Q.class_specificity(maps[:11], grids)


# ---------------------------------------------------------------------- runner + report
def test_bench_scores_grids_and_the_random_reference_is_at_chance():
    from cfviewer.evaluation import EvaluationOptions, run_evaluation
    from cfviewer.evaluation.report import render_markdown
    from cfviewer.models import random_bundle

    bundle = random_bundle(resolution=64, seed=0)
    # a random model's probabilities sit in a narrow band: put each threshold at its median
    # over a few phantoms so that every pathology has true positives and true negatives
    source = PhantomSource(64)
    probs = bundle.predict(np.stack([source.render(int(s))[0] for s in bench_seeds(40, 5, 4)]))
    bundle.thresholds = dict(zip(bundle.pathologies, np.median(probs, axis=0).tolist()))
    opts = EvaluationOptions.quick_mode(n=2, methods=["gradient"], progress=False,
                                        randomization_cases=0, confounder_cases=0, grids_per_pathology=2)
    result = run_evaluation(bundle, opts)
    assert result.grids == sum(result.grid_counts.values()) > 0
    assert set(result.grid_pools) == set(PATHOLOGIES)
    by = {m.name: m for m in result.methods}
    cs = by["gradient"].class_specificity
    assert len(cs) == result.grids and np.all((cs.share >= 0) & (cs.share <= 1))
    ref = by["random (reference)"].class_specificity
    assert len(ref) == result.grids
    assert abs(float(ref.share.mean()) - 0.25) < 0.02

    md = render_markdown(result).split("### 5. Class sensitivity (Attri-Net protocol)")[1].split("### 6.")[0]
    assert "most confident true positive" in md and "0.49-0.62 for Attri-Net" in md
    assert f"**{result.grids} grids** (2 asked per pathology; " in md
    assert "| method | share on TP (mean ± sd) | TP largest |" in md
    assert "| `gradient` |" in md and "| `random (reference)` |" in md
    short = [p for p, g in result.grid_pools.items() if g.grids < 2]
    if short:
        assert "Fewer grids than asked: " in md and all(f"{p} {result.grid_counts[p]} of 2 (" in md for p in short)
    else:
        assert "Every pathology got the 2 grids asked." in md


def test_report_says_when_no_grid_is_asked_or_made():
    from cfviewer.evaluation.report import class_sensitivity_section

    res = SimpleNamespace(options=SimpleNamespace(seed=0, grids_per_pathology=0), grids=0,
                          grid_pools={}, methods=[])
    assert "Not asked in this run (`--grids 0`)." in "\n".join(class_sensitivity_section(res))
    pool = GridPool("Mass", 3, 12, 36, 0, 30, 0, 0.4)
    res = SimpleNamespace(options=SimpleNamespace(seed=0, grids_per_pathology=3), grids=0,
                          grid_pools={"Mass": pool}, methods=[])
    text = "\n".join(class_sensitivity_section(res))
    assert "**0 grids** (3 asked per pathology; Mass 0)" in text and "| method |" not in text
    assert ("Fewer grids than asked: Mass 0 of 3 (threshold 0.40: 0 true positives among 12 "
            "positive candidates).") in text
