"""The explainer evaluation (`cfviewer bench`, cfviewer.evaluation) and the shared markdown sections."""

from __future__ import annotations

import numpy as np
import pytest

from cfviewer.evaluation import EvaluationOptions, run_evaluation
from cfviewer.evaluation.cases import PhantomSource, bench_seeds, make_cases, training_seed_overlap
from cfviewer.evaluation.report import ReportError, read_section, render_markdown, write_section
from cfviewer.evaluation.runner import _LatentShiftShare, _method_maps
from cfviewer.cli import main


# ---------------------------------------------------------------------- write_section
def test_write_section_creates_replaces_and_appends(tmp_path):
    md = tmp_path / "docs" / "benchmarks.md"
    write_section(md, "explainers", "first")
    assert md.read_text() == "<!-- section:explainers -->\nfirst\n<!-- /section:explainers -->\n"

    md.write_text("# Benchmarks\n\nintro\n\n" + md.read_text() + "\ntrailer\n")
    write_section(md, "imaging", "| a |\n|---|\n| 1 |")
    write_section(md, "explainers", "second\nline")
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n\n<!-- section:explainers -->\nsecond\nline\n")
    assert "first" not in text and "trailer" in text
    assert text.count("<!-- section:explainers -->") == 1
    assert text.index("trailer") < text.index("<!-- section:imaging -->")
    assert read_section(md, "imaging") == "| a |\n|---|\n| 1 |"
    assert read_section(md, "explainers") == "second\nline"
    assert read_section(md, "absent") is None

    write_section(md, "imaging", "2")  # replacing keeps everything else byte-identical
    assert md.read_text() == text.replace("| a |\n|---|\n| 1 |", "2")


def test_write_section_refuses_broken_input(tmp_path):
    md = tmp_path / "b.md"
    md.write_text("<!-- section:x -->\nno end\n")
    with pytest.raises(ReportError, match="never closes"):
        write_section(md, "x", "new")
    assert md.read_text() == "<!-- section:x -->\nno end\n"
    with pytest.raises(ReportError, match="section name"):
        write_section(md, "a b", "text")
    with pytest.raises(ReportError, match="not a file"):
        write_section(tmp_path, "x", "text")


# ---------------------------------------------------------------------- cases
def test_cases_cycle_over_pathologies_with_masks():
    from cfviewer import PATHOLOGIES

    cases, skipped = make_cases(12, seed=3, size=64, pathologies=PATHOLOGIES)
    # Every phantom of this seed has a usable mask (checked once; deterministic), so an empty
    # or partial case list is a failure, not a reason to skip the order check.
    assert skipped == {}
    assert [c.target for c in cases] == list(PATHOLOGIES) * 2
    assert [c.uid for c in cases] == [f"case{i}" for i in range(12)]
    for c in cases:
        assert c.image.shape == (64, 64) and c.mask.shape == (64, 64)
        assert c.mask.any() and not c.mask.all()
    # Deterministic and disjoint from a training set's seed stream.
    again, _ = make_cases(12, seed=3, size=64, pathologies=PATHOLOGIES)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(cases, again))
    from cfviewer.phantoms import image_seeds

    assert not set(bench_seeds(200, 0).tolist()) & set(image_seeds(20000, 0).tolist())


def test_cases_skip_and_count_phantoms_with_an_empty_target_mask(monkeypatch):
    from cfviewer import PATHOLOGIES, phantoms

    real = phantoms.generate
    seeds = bench_seeds(12, 3)

    def generate(seed, *args, **kwargs):  # phantom 3 (Lung Opacity) gets an empty mask
        ph = real(seed, *args, **kwargs)
        if int(seed) == int(seeds[3]):
            ph.masks = {k: np.zeros_like(m) for k, m in ph.masks.items()}
        return ph

    monkeypatch.setattr(phantoms, "generate", generate)
    cases, skipped = make_cases(12, seed=3, size=64, pathologies=PATHOLOGIES)
    assert skipped == {"Lung Opacity": 1}
    assert [c.uid for c in cases] == [f"case{i}" for i in range(12) if i != 3]
    assert [c.target for c in cases] == [PATHOLOGIES[i % 6] for i in range(12) if i != 3]


def testtraining_seed_overlap_reads_training_meta():
    class Fake:
        meta = {"training": {"data_seeds": {"train": 11, "val": 12}, "n_train": 500, "n_val": 50}}

    assert training_seed_overlap(Fake(), bench_seeds(50, 0)) == 0
    Fake.meta = {}
    assert training_seed_overlap(Fake(), bench_seeds(50, 0)) is None


# class-sensitivity grids (Attri-Net protocol): tests/test_class_sensitivity.py


# ---------------------------------------------------------------------- runner
@pytest.fixture(scope="module")
def bundle64():
    from cfviewer.models import random_bundle

    return random_bundle(resolution=64, seed=0)


def test_shared_latentshift_frames_reproduce_each_methods_own_explain(bundle64):
    from cfviewer.explain import get_explainer
    from cfviewer import PATHOLOGIES

    # The shared path runs one Latent Shift search for both cases together (explain_batch:
    # each round's lambdas of both images are decoded in one batched pass), own explain()
    # decodes one image's lambdas alone. oneDNN's convolution kernels block and accumulate
    # differently for different batch compositions, so the same frame comes out a few float32
    # ulps apart (up to ~5e-5 on frames of magnitude ~110 with the AVX/AVX2 kernels; ~2e-5 with
    # AVX-512) -- the float reduction order, not the method. Maps linear in the frames
    # (latentshift-mean, adversarial_diff_x) inherit that ~1e-6 of their scale. The
    # adversarial_fi-v2 map multiplies by the mean |df/dx| over 50 points of the path
    # x_s -> x_a, and the input gradient of a ReLU network is piecewise constant: those ulps
    # can flip an activation at a point or two of the path (1-5 % change of that point's
    # gradient), which moved up to ~200 of the 8,192 map values by up to ~1e-3 of the map's
    # max (0.4-0.6 % relative on the faint values) -- an elementwise rtol of 1e-4 cannot hold
    # there (it failed every run with ONEDNN_MAX_CPU_ISA=AVX2, passed with AVX-512).
    # So: the discrete decisions (search bound, refinement, hence every lambda)
    # must be identical, the frames equal at the frames' float scale, and each map equal at
    # the map's own scale (1e-2 of its max; a wrong frame, pair, map method or case order
    # changes maps by O(1) of their max).
    cases, _ = make_cases(2, seed=5, size=64, pathologies=PATHOLOGIES)
    share = _LatentShiftShare()
    ls = get_explainer("latentshift", bundle64)
    own_ls = [ls.explain(c.image, c.target) for c in cases]
    for name in ("latentshift-mean", "adversarial_fi-v2_smooth", "adversarial_diff_x"):
        ex = get_explainer(name, bundle64)
        shared = _method_maps(ex, share, bundle64, "trained", cases, batch=2)
        own = [ex.explain(c.image, c.target) for c in cases]
        base = share.base(share.key_of(ex), bundle64, "trained", cases, batch=2)  # cached
        for c, s_map, o, b, o_ls in zip(cases, shared, own, base, own_ls):
            where = f"{name} on {c.uid}"
            np.testing.assert_array_equal(b.lambdas, o_ls.lambdas, err_msg=where)
            np.testing.assert_array_equal(o.lambdas, o_ls.lambdas, err_msg=where)
            frame_scale = float(np.abs(o_ls.frames).max())
            np.testing.assert_allclose(b.frames, o_ls.frames, rtol=0, atol=1e-5 * frame_scale,
                                       err_msg=where)
            scale = float(np.abs(o.map).max())
            assert scale > 0, where
            np.testing.assert_allclose(s_map, o.map, rtol=0, atol=1e-2 * scale, err_msg=where)
    assert share.computed == len(cases)  # one search per case, shared by all three methods


def test_a_failing_method_is_reported_not_hidden(bundle64):
    from cfviewer.explain import base as explain_base

    class Broken(explain_base.Explainer):
        name = "broken-test"

        def _explain_tensors(self, x, targets, idx, **kwargs):
            raise RuntimeError("deliberately broken")

    explain_base.list_explainers()
    explain_base.register("broken-test", Broken)
    try:
        opts = EvaluationOptions.quick_mode(n=2, methods=["gradient", "broken-test"], progress=False,
                                       randomization_cases=0, confounder_cases=0, grids_per_pathology=0)
        result = run_evaluation(bundle64, opts)
    finally:
        explain_base._REGISTRY.pop("broken-test", None)
    by = {m.name: m for m in result.methods}
    assert by["gradient"].ran and len(by["gradient"].localisation) == len(result.cases)
    assert "deliberately broken" in by["broken-test"].error
    md = render_markdown(result)
    assert "`broken-test`: not run: failed during localisation: RuntimeError: deliberately broken" in md


def test_cli_bench_quick_end_to_end(tmp_path, bundle64):
    bdir = bundle64.save(tmp_path / "bundle")
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n<!-- section:imaging -->\nkeep me\n<!-- /section:imaging -->\n")
    methods = ["gradient", "guided_backprop", "latentshift", "latentshift-max",
               "adversarial_fi-v2_smooth", "adversarial_diff"]
    rc = main(["bench", "--quick", "--bundle", str(bdir), "--out", str(out), "--no-progress",
               "--methods", *methods])
    assert rc == 0
    text = out.read_text()
    assert "keep me" in text
    section = read_section(out, "explainers")
    assert section is not None and "cfviewer bench --quick" in section
    for heading in ("### 1. Localisation", "### 2. Faithfulness", "### 3. Sanity",
                    "### 4. Confounder", "### 5. Class sensitivity (Attri-Net protocol)", "### 6. Speed",
                    "### 7. Counterfactuals", "### Claims"):
        assert heading in section
    # class sensitivity: the grids the random bundle's own calls allow (quick: 1 per pathology)
    cs_part = section.split("### 5. Class sensitivity")[1].split("### 6. Speed")[0]
    assert "(1 asked per pathology; " in cs_part
    assert "Fewer grids than asked: " in cs_part or "Every pathology got the 1 grids asked." in cs_part
    # only explainers with frames / a counterfactual are in the counterfactual table
    cf_part = section.split("### 7. Counterfactuals")[1].split("### Claims")[0]
    assert "| `gradient` |" not in cf_part and "| `guided_backprop` |" not in cf_part
    assert "`latentshift-max`: same explainer as `latentshift`" in section
    for m in ("gradient", "guided_backprop", "latentshift", "adversarial_fi-v2_smooth",
              "adversarial_diff", "random (reference)"):
        assert f"| `{m}` |" in section
    assert "1. *Latent Shift decorrelates faster" in section
    claims_part = section.split("### Claims")[1]
    for k in ("1.", "2.", "3."):   # computed: both methods of each ran
        line = next(ln for ln in claims_part.splitlines() if ln.startswith(k))
        assert "not measurable" not in line, line
    # the SAGen claims need the sagen explainers (this bundle has no generators): said so
    assert "4. *SAGen's" in claims_part and "5. *Averaging" in claims_part
    assert claims_part.count("not measurable here") == 2
    from cfviewer.evaluation import machine_info

    mc = machine_info()  # the machine line names this machine's CPU count and torch threads
    assert f"- Machine: {mc['cpu']}, {mc['cpu_count']} CPUs (shared with other jobs), " in section
    assert f"torch {mc['torch']} with {mc['torch_threads']} threads" in section

    # A second run replaces the section instead of appending another one.
    rc = main(["bench", "--quick", "--bundle", str(bdir), "--out", str(out), "--no-progress",
               "--methods", "gradient"])
    assert rc == 0
    assert out.read_text().count("<!-- section:explainers -->") == 1
    assert "| `latentshift` |" not in read_section(out, "explainers")


def test_cli_bench_user_errors(tmp_path, capsys, bundle64):
    bdir = bundle64.save(tmp_path / "bundle")
    rc = main(["bench", "--quick", "--bundle", str(bdir), "--out", str(tmp_path / "b.md"),
               "--methods", "no-such-method", "--no-progress"])
    assert rc == 2
    assert "unknown method(s) no-such-method" in capsys.readouterr().err
    rc = main(["bench", "--quick", "--bundle", str(tmp_path / "missing"), "--out", str(tmp_path / "b.md")])
    assert rc == 2


def test_phantom_source_renders_as_the_bundle_was_trained():
    from types import SimpleNamespace

    from cfviewer.models.data import phantom_config
    from cfviewer.phantoms import generate

    b = SimpleNamespace(resolution=32, meta={"training": {"config": {
        "phantoms": {"mimic_probability": 1.0}, "render_scale": 2}}})
    src = PhantomSource.for_bundle(b)
    assert (src.size, src.render_scale, src.options) == (32, 2, {"mimic_probability": 1.0})
    image, masks = src.render(11, labels={"Mass": 1})
    big = generate(11, size=64, config=phantom_config(64, {"mimic_probability": 1.0}), labels={"Mass": 1})
    assert image.shape == (32, 32) and masks["Mass"].shape == (32, 32)
    assert any(k.startswith("mimic_") for k in masks)  # the bundle's options reach the phantom
    # a mask pixel wherever any of its 2 x 2 source pixels is in the mask
    want = big.masks["Mass"].reshape(32, 2, 32, 2).any(axis=(1, 3))
    np.testing.assert_array_equal(masks["Mass"], want)
    assert abs(float(image.mean()) - float(big.image.mean())) < 5.0
    plain = PhantomSource.for_bundle(SimpleNamespace(resolution=32, meta={}))
    assert (plain.render_scale, plain.options) == (1, {})
    cases, _ = make_cases(6, seed=3, size=32, pathologies=["Mass", "Effusion"], source=src)
    assert all(c.image.shape == (32, 32) and c.mask.shape == (32, 32) for c in cases)
