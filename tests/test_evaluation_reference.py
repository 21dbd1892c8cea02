"""Issue 8: the evaluation's count of the public reference (ieee8023/latentshift) is the
reference's own walk with its own defaults, not a replay of cfviewer's resolved settings."""

from __future__ import annotations

import pytest

from cfviewer.evaluation import EvaluationOptions, make_cases, reference_counts, run_evaluation
from cfviewer.evaluation.report import reference_sentence, render_markdown
from cfviewer.explain.latentshift import reference_run


@pytest.fixture(scope="module")
def rb():
    from cfviewer.models import random_bundle

    return random_bundle(resolution=64, seed=0)


def test_reference_counts_are_reference_runs(rb):
    cases, _ = make_cases(4, seed=1, size=64, pathologies=rb.pathologies)
    ref = reference_counts(rb, cases)
    runs = [reference_run(rb, c.image, c.target) for c in cases]
    assert ref["cases"] == len(cases)
    assert ref["decoder_mean"] == pytest.approx(sum(r.decoder_images for r in runs) / len(runs))
    assert ref["settings"]["search_pred_diff"] == 0.8
    assert sum(ref["stop_reasons"].values()) == len(cases)
    text = reference_sentence(ref)
    assert f"**{ref['decoder_mean']:.1f} decoder images per explanation**" in text
    assert "ieee8023/latentshift" in text and f"first {len(cases)} cases" in text
    assert reference_counts(rb, []) is None


def test_speed_section_has_no_replayed_reference_column(rb):
    opts = EvaluationOptions.quick_mode(n=2, methods=["latentshift"], progress=False, randomization_cases=0,
                                   confounder_cases=0, grids_per_pathology=0, reference_cases=2)
    result = run_evaluation(rb, opts)
    assert result.reference_latentshift["cases"] == 2
    md = render_markdown(result)
    assert "reference walk decoder imgs" not in md and "sequential walk of the reference" not in md
    assert reference_sentence(result.reference_latentshift) in md
    by = {m.name: m for m in result.methods}
    assert "reference_decoder" not in by["latentshift"].speed.evaluations
    # without an autoencoder method there is nothing to compare
    opts = EvaluationOptions.quick_mode(n=2, methods=["gradient"], progress=False, randomization_cases=0,
                                   confounder_cases=0, grids_per_pathology=0)
    assert run_evaluation(rb, opts).reference_latentshift is None
