"""AppTest of the reader pages: access by token, worklist, case viewer, answers, Back, resume."""

from __future__ import annotations


import numpy as np
import pytest
from sqlalchemy import func, select

import ui_fixtures as F
from cfviewer.study import responses as R
from cfviewer.study.schema import Assignment, Reader, Response, ResponseHistory
from cfviewer.ui import reading

pytestmark = pytest.mark.slow


@pytest.fixture()
def fx(tmp_path_factory, tmp_path):
    return F.fresh_copy(F.template(tmp_path_factory), tmp_path / "db")


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [e.value for e in at.info]
    parts += [e.value for e in at.success] + [e.value for e in at.warning] + [e.value for e in at.caption]
    parts += [t.value for t in at.title] + [t.value for t in at.subheader] + [r.label for r in at.radio]
    parts += _captions(at)
    return "\n".join(str(p) for p in parts)


def _captions(at) -> list[str]:
    return [c for img in at.get("image") for c in img.captions]


def _reader(db, name):
    with db.read() as s:
        return s.scalars(select(Reader).where(Reader.name == name)).one()


def _open_case(at):
    at.run()
    assert not at.exception, at.exception
    at.button(key="continue").click().run()
    assert not at.exception, at.exception
    return at


def _answer(at, values=(4, 2), comment=None):
    at.radio(key=_radio_key(at, 0)).set_value(values[0])
    at.radio(key=_radio_key(at, 1)).set_value(values[1])
    if comment is not None:
        next(t for t in at.text_input if t.label.startswith("Comment")).input(comment)
    _save(at)


def _radio_key(at, i):
    keys = [r.key for r in at.radio if r.key and r.key.startswith("cfv_q_")]
    return keys[i]


def _save(at):
    next(b for b in at.button if b.label == "Save and next").click().run()
    assert not at.exception, at.exception


def _current_assignment(at) -> int:
    return int(_radio_key(at, 0).split("_")[2])


def test_without_a_token_only_the_sign_in_page_and_no_study_data(fx, monkeypatch):
    at = F.app_test(fx, monkeypatch)
    at.run()
    assert not at.exception
    text = _texts(at)
    assert "Researcher sign-in" in text and "personal link" in text
    assert "alice" not in text and "Method A" not in text and "predicts" not in text
    assert [t.label for t in at.text_input] == ["Admin password"]


def test_an_unknown_token_is_refused_clearly_and_shows_nothing(fx, monkeypatch):
    bad = fx.tokens["alice"][:-2] + "xx"
    at = F.app_test(fx, monkeypatch, token=bad)
    at.run()
    assert not at.exception
    assert any("not valid" in e.value for e in at.error)
    text = _texts(at)
    assert "alice" not in text and "Session" not in text and "predicts" not in text
    assert len(at.radio) == 0 and len(at.text_input) == 0  # not even the sign-in form


def test_worklist_shows_progress_and_sessions(fx, monkeypatch):
    at = F.app_test(fx, monkeypatch, token=fx.tokens["alice"])
    at.run()
    assert not at.exception
    text = _texts(at)
    assert "Welcome, alice" in text
    assert "Session 1" in text and "Session 2" in text and "Locked" in text
    assert at.button(key="continue").label == "Start reading"
    assert "0 of 12 cases done" in at.get("progress")[0].proto.text


def test_case_viewer_states_the_prediction_and_hides_internals(fx, monkeypatch):
    at = _open_case(F.app_test(fx, monkeypatch, token=fx.tokens["alice"]))
    text = _texts(at)
    db = fx.open()
    with db.read() as s:
        a = R.next_assignment(s, _reader(db, "alice")).assignment
        view = R.read_view(s, _reader(db, "alice"), a.id)
        stratum = a.cohort.stratum
    assert f"The model predicts {view.pathology}, probability {view.probability:.2f}" in text
    assert view.arm in text
    for secret in ("gradient", "guided", "integrated", "latentshift", stratum, "bob", "threshold"):
        assert secret not in text, secret
    # the radiograph and one overlay per explainer of the arm, neutral labels
    captions = _captions(at)
    n_methods = len(F.ARM_A) if view.arm == "Method A" else len(F.ARM_B)
    assert captions[0].startswith("Original radiograph")
    assert [c for c in captions if c.endswith("heat map")] == [
        f"Explanation {i}: heat map" for i in range(1, n_methods + 1)]
    # questions with their anchor labels, nothing preselected
    radios = [r for r in at.radio if r.key.startswith("cfv_q_")]
    assert [r.label for r in radios] == ["How confident are you in the model's prediction?",
                                         "Is the model looking at the correct feature?"]
    assert all(r.value is None for r in radios)
    assert radios[0].format_func(1) == "1 - Not at all confident"
    # shown_at recorded on the server when the case was first served
    with db.read() as s:
        assert s.get(Assignment, a.id).shown_at is not None
    db.dispose()


def test_all_questions_are_required_before_next(fx, monkeypatch):
    at = _open_case(F.app_test(fx, monkeypatch, token=fx.tokens["alice"]))
    first = _current_assignment(at)
    at.radio(key=_radio_key(at, 0)).set_value(3)
    _save(at)
    assert any("Please answer every question" in e.value and "correct feature" in e.value for e in at.error)
    assert _current_assignment(at) == first
    assert at.radio(key=_radio_key(at, 0)).value == 3  # nothing the reader entered is lost
    db = fx.open()
    with db.read() as s:
        assert s.scalar(select(func.count(Response.id))) == 0
    db.dispose()


def test_answers_are_saved_and_a_reload_resumes_exactly(fx, monkeypatch):
    at = _open_case(F.app_test(fx, monkeypatch, token=fx.tokens["alice"]))
    done = []
    for i in range(3):
        aid = _current_assignment(at)
        _answer(at, (i + 1, 5 - i), comment="blurry" if i == 1 else None)
        done.append(aid)
        assert _current_assignment(at) != aid
    at_next = _current_assignment(at)
    # a reload = a fresh session: the worklist says 3 done and Continue opens the 4th case
    at2 = F.app_test(fx, monkeypatch, token=fx.tokens["alice"])
    at2.run()
    assert "3 of 12 cases done" in at2.get("progress")[0].proto.text
    assert at2.button(key="continue").label == "Continue with case 4 of 12"
    at2.button(key="continue").click().run()
    assert _current_assignment(at2) == at_next
    db = fx.open()
    with db.read() as s:
        rows = s.execute(select(Response.assignment_id, Response.value, Response.comment)
                         .order_by(Response.assignment_id, Response.question_id)).all()
        assert s.scalar(select(func.count(ResponseHistory.id))) == 6
    assert [(a, v) for a, v, _ in rows] == [(aid, v) for aid, vals in zip(done, [(1, 5), (2, 4), (3, 3)])
                                            for v in vals]
    assert [c for _, _, c in rows] == [None, None, "blurry", "blurry", None, None]
    db.dispose()


def test_back_shows_the_saved_answer_and_an_edit_keeps_history(fx, monkeypatch):
    at = _open_case(F.app_test(fx, monkeypatch, token=fx.tokens["alice"]))
    first = _current_assignment(at)
    _answer(at, (2, 2))
    second = _current_assignment(at)
    at.button(key="cfv_back").click().run()
    assert _current_assignment(at) == first
    assert at.radio(key=_radio_key(at, 0)).value == 2
    assert "reviewing a saved answer" in _texts(at)
    _answer(at, (5, 2))
    assert _current_assignment(at) == second  # forward again to where the reader stopped
    db = fx.open()
    with db.read() as s:
        hist = s.execute(select(ResponseHistory.action, ResponseHistory.old_value, ResponseHistory.new_value)
                         .order_by(ResponseHistory.id)).all()
    assert sorted(hist) == sorted([("create", None, 2), ("create", None, 2), ("edit", 2, 5)])
    db.dispose()
    # Back on the first case of the session says why it cannot go further
    at.button(key="cfv_back").click().run()
    at.button(key="cfv_back").click().run()
    assert any("first case of this session" in w.value for w in at.warning)


def test_counterfactual_arm_has_animation_frame_slider_and_toggle(fx, monkeypatch):
    # bob's arm order is B then A (Latin square), so his first case shows Latent Shift
    at = _open_case(F.app_test(fx, monkeypatch, token=fx.tokens["bob"]))
    text = _texts(at)
    assert "Method B" in text and "Explanation 1: animation" in text
    show = at.toggle(key="cfv_show")
    assert show.label == "Counterfactual" and show.value is False
    assert _captions(at)[0].startswith("Original radiograph")
    show.set_value(True).run()
    slider = next(s for s in at.slider if s.key.startswith("cfv_frame_"))
    # the precomputed frames: sorted by lambda, the counterfactual first
    db = fx.open()
    with db.read() as s:
        aid = int(slider.key.split("_")[-1])
        media = reading.explanation_media(s, R.get_assignment(s, _reader(db, "bob"), aid))
    db.dispose()
    data = np.load(media[0].frames_path)
    n_steps = int((data["lambdas"] <= 0).sum())
    assert slider.value == slider.max == n_steps - 1
    last = n_steps - 1
    assert f"Counterfactual frame {last} of {last}" in _texts(at)
    assert f"lambda = {float(data['lambdas'][0]):.3g}, p = {data['frame_preds'][0]:.2f}" in _texts(at)
    slider.set_value(0).run()
    assert f"Counterfactual frame 0 of {last}" in _texts(at)
    # frame 0 is the reconstruction: both probabilities, named as in the animation
    i0 = int(np.argmin(np.abs(data["lambdas"])))
    db = fx.open()
    with db.read() as s:
        told = R.read_view(s, _reader(db, "bob"), aid).probability
    db.dispose()
    assert (f"original p = {told:.2f} · reconstruction p = "
            f"{data['frame_preds'][i0]:.2f}") in _texts(at)
    opacity = at.slider(key="cfv_opacity")
    opacity.set_value(0.2).run()
    assert not at.exception


def test_window_level_and_zoom_change_the_rendered_image(fx, monkeypatch):
    at = _open_case(F.app_test(fx, monkeypatch, token=fx.tokens["alice"]))
    before = [c for c in _texts(at).splitlines() if c.startswith("Original radiograph")]
    at.selectbox(key="cfv_view_preset").set_value("Full range").run()
    at.slider(key="cfv_view_zoom").set_value(2.0).run()
    after = [c for c in _texts(at).splitlines() if c.startswith("Original radiograph")]
    assert before != after and "level 0, width 2048" in after[0] and "zoom 2x" in after[0]


def test_finished_reader_sees_thanks_and_can_review_the_last_answer(fx, monkeypatch):
    db = fx.open()
    reader = _reader(db, "alice")
    while True:
        with db.read() as s:
            nx = R.next_assignment(s, reader)
        if nx.status != "ready":
            break
        R.record_response(db, reader.id, nx.assignment.id, F.ANSWERS)
    at = F.app_test(fx, monkeypatch, token=fx.tokens["alice"])
    at.run()
    assert any("answered every case" in s.value for s in at.success)
    assert "continue" not in [b.key for b in at.button]
    db.dispose()


def test_washout_gap_shows_when_the_next_session_opens(fx, monkeypatch):
    F.set_config(fx, min_gap_hours=2.0)
    db = fx.open()
    reader = _reader(db, "alice")
    with db.read() as s:
        first_session = [a.id for a in s.scalars(select(Assignment).where(
            Assignment.reader_id == reader.id, Assignment.session == 1))]
    for aid in first_session:
        R.record_response(db, reader.id, aid, F.ANSWERS)
    at = F.app_test(fx, monkeypatch, token=fx.tokens["alice"])
    at.run()
    text = _texts(at)
    assert "Session 2 opens at" in text
    assert "(in 1 h 59 min)" in text or "(in 2 h)" in text
    assert "continue" not in [b.key for b in at.button]
    db.dispose()


@pytest.mark.parametrize("order", ["alice-bob", "bob-alice", "alice-alice", "alice-junk"])
def test_a_link_with_two_tokens_shows_the_invalid_link_page_and_no_data(fx, monkeypatch, order):
    # Streamlit keeps the last of repeated query parameters: `?token=A&token=B` must neither
    # sign the visitor in as B nor as A (exactly one token is accepted).
    tokens = [fx.tokens.get(n, "junk-token") for n in order.split("-")]
    at = F.app_test(fx, monkeypatch)
    at.query_params["token"] = tokens
    at.run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert any("reader link is not valid" in e.value for e in at.error), text
    assert "Welcome" not in text and "predicts" not in text and "cases done" not in text
    assert "Start reading" not in [b.label for b in at.button] and len(at.get("image")) == 0
    for page in ("pages/reader/reader_worklist.py", "pages/reader/reader_case.py"):
        try:
            at.switch_page(page).run()
        except Exception:
            continue  # not registered for this visitor at all
        assert not at.exception
        assert "Welcome" not in _texts(at) and "predicts" not in _texts(at)


def test_a_doubled_link_does_not_reuse_the_token_the_session_held(fx, monkeypatch):
    at = F.app_test(fx, monkeypatch)
    at.query_params["token"] = [fx.tokens["alice"]]
    at.run()
    assert "Welcome, alice" in _texts(at)
    at.query_params["token"] = [fx.tokens["alice"], fx.tokens["bob"]]
    at.run()  # the same session: the token it held is not used for a doubled link
    assert "Welcome" not in _texts(at) and any("not valid" in e.value for e in at.error)


def test_reader_pages_refuse_a_visitor_without_a_valid_token(fx, monkeypatch):
    at = F.app_test(fx, monkeypatch)
    at.run()
    for page in ("pages/reader/reader_case.py", "pages/reader/reader_worklist.py"):
        try:
            at.switch_page(page).run()
        except Exception:
            continue  # not registered for a guest at all
        assert not at.exception
        assert "predicts" not in _texts(at) and "Welcome" not in _texts(at)
        assert len([r for r in at.radio if r.key and r.key.startswith("cfv_q_")]) == 0
