"""The reader page's counterfactual slider caption names both probabilities on the unshifted
frame (the autoencoder's reconstruction), like the animation (issue 8, section 4)."""

import pytest

from cfviewer.ui import reading


def test_frame_zero_gives_the_original_and_the_reconstruction():
    steps = reading.frame_steps(4, lambdas=[-30.0, -20.0, -10.0, 0.0], preds=[0.05, 0.07, 0.09, 0.10])
    assert [s.lam for s in steps] == [0.0, -10.0, -20.0, -30.0]
    first = reading.frame_caption(steps[0], 3, "Mass", 0.38)
    assert "original p = 0.38 · reconstruction p = 0.10" in first and "lambda = 0" in first
    assert reading.frame_caption(steps[3], 3, "Mass", 0.38) == (
        "Counterfactual frame 3 of 3 · Mass: lambda = -30, p = 0.05")
    # without recorded lambdas the unshifted step is still step 0
    bare = reading.frame_steps(2, preds=[0.2, 0.4])
    assert "reconstruction p = 0.40" in reading.frame_caption(bare[0], 1, "Mass", None)
    assert "original p = not recorded" in reading.frame_caption(bare[0], 1, "Mass", None)


def test_without_an_autoencoder_frame_zero_is_the_image_itself():
    """Attri-Net's frames run from x + M_c(x) to x: its lambda = 0 frame is no reconstruction."""
    steps = reading.frame_steps(3, lambdas=[-1.0, -0.5, 0.0], preds=[0.2, 0.5, 0.9], start="image")
    first = reading.frame_caption(steps[0], 2, "Effusion", 0.9)
    assert first == "Counterfactual frame 0 of 2: the image itself (lambda = 0) · Effusion: original p = 0.90"
    assert "reconstruction" not in first
    assert reading.frame_caption(steps[2], 2, "Effusion", 0.9) == (
        "Counterfactual frame 2 of 2 · Effusion: lambda = -1, p = 0.20")


def test_the_animation_note_says_what_frame_zero_is():
    with_ae = reading.frame_steps(2, lambdas=[-10.0, 0.0], preds=[0.1, 0.4])
    without = reading.frame_steps(2, lambdas=[-1.0, 0.0], preds=[0.1, 0.4], start="image")
    assert "autoencoder's **reconstruction**" in reading.animation_note(with_ae)
    assert "no autoencoder" in reading.animation_note(without) and "reconstruction" not in reading.animation_note(without)


def test_sagen_frame_zero_is_the_similar_image_not_a_reconstruction():
    """SAGen's frames run on the straight path g_s(x) -> g_a(x): its lambda = 0 frame is the
    similar generator's image, and the slider and the note say so."""
    steps = reading.frame_steps(3, lambdas=[-1.0, -0.5, 0.0], preds=[0.1, 0.5, 0.8], start="similar")
    first = reading.frame_caption(steps[0], 2, "Mass", 0.82)
    assert first == ("Counterfactual frame 0 of 2: the similar generator's image g_s(x) (lambda = 0) · "
                     "Mass: original p = 0.82 · similar image g_s(x) p = 0.80")
    assert "reconstruction" not in first
    note = reading.animation_note(steps)
    assert "g_s(x)" in note and "reconstruction" not in note


def test_the_start_frame_is_read_from_the_record_old_records_included():
    from cfviewer.explain.frames import start_frame_of

    assert start_frame_of({"explanation": {"start_frame": "similar", "pred_reconstruction": 0.8}}) == "similar"
    # records written before the field: a null reconstruction probability means the image itself
    assert start_frame_of({"pred_reconstruction": None}) == "image"
    assert start_frame_of({"pred_reconstruction": 0.4}) == "reconstruction"
    assert start_frame_of(None) == "reconstruction"
    with pytest.raises(ValueError, match="use one of reconstruction, similar, image"):
        reading.frame_steps(2, start="twin")
