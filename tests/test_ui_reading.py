"""cfviewer.ui.reading (the reader flow) and cfviewer.ui.research (researcher helpers) over a
real sample study, without Streamlit."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pandas as pd
import pytest
from sqlalchemy import select

import ui_fixtures as F
from cfviewer.study import responses as R
from cfviewer.study.schema import Assignment, Reader
from cfviewer.ui import reading, research

UTC = dt.timezone.utc


@pytest.fixture()
def fx(tmp_path_factory, tmp_path):
    return F.fresh_copy(F.template(tmp_path_factory), tmp_path / "db")


@pytest.fixture()
def db(fx):
    d = fx.open()
    yield d
    d.dispose()


def _reader(db, name="alice"):
    with db.read() as s:
        return s.scalars(select(Reader).where(Reader.name == name)).one()


def test_frame_steps_go_from_unchanged_to_the_counterfactual():
    steps = reading.frame_steps(5, lambdas=[-40, -20, -10, 0, 10], preds=[0.1, 0.3, 0.5, 0.7, 0.9])
    assert [s.frame_index for s in steps] == [3, 2, 1, 0]  # lambda 0 first, upward frame left out
    assert [s.prediction for s in steps] == [0.7, 0.5, 0.3, 0.1]
    assert [s.step for s in reading.frame_steps(3)] == [0, 1, 2]
    assert reading.frame_steps(2, preds=[float("nan"), 0.2])[1].prediction is None


def test_prediction_sentence_is_the_same_for_every_arm():
    assert reading.prediction_sentence("Effusion", 0.7381) == "The model predicts Effusion, probability 0.74"


def test_format_when():
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert reading.format_when(now + dt.timedelta(hours=3, minutes=20), now) == \
        "at 2026-01-01 15:20 UTC (in 3 h 20 min)"
    assert reading.format_when(now + dt.timedelta(days=1, hours=1), now).endswith("(in 1 d 1 h)")
    assert reading.format_when(now, now).endswith("(in 0 min)")


def test_open_screen_resumes_and_records_shown_at_once(db):
    alice = _reader(db)
    t0 = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
    first = reading.open_screen(db, alice, now=t0)
    assert first.kind == "case" and first.shown_at == t0 and not first.answered
    again = reading.open_screen(db, alice, now=t0 + dt.timedelta(minutes=5))
    assert again.view.assignment_id == first.view.assignment_id and again.shown_at == t0
    # media: neutral labels in the arm's order, the files that precompute wrote
    labels = [m.label for m in first.media]
    assert labels == [f"Explanation {i + 1}" for i in range(len(labels))]
    assert all(m.map_path and m.map_path.is_file() for m in first.media)


def test_submit_refuses_missing_answers_and_saves_duration(db):
    alice = _reader(db)
    t0 = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
    screen = reading.open_screen(db, alice, now=t0)
    out = reading.submit(db, alice, screen.view, {"confidence": 3, "correct_feature": None})
    assert not out.saved and out.missing == ("correct_feature",)
    assert "Is the model looking at the correct feature?" in out.message
    out = reading.submit(db, alice, screen.view, F.ANSWERS, "ok", now=t0 + dt.timedelta(seconds=42))
    assert out.saved and out.next_id is None
    with db.read() as s:
        answers, comment = R.current_answers(s, alice, screen.view.assignment_id)
    assert answers == F.ANSWERS and comment == "ok"
    df = research.responses_table(db, "uitest", include_simulated=True)
    assert set(df["duration_s"]) == {42.0}


def test_back_and_forward_within_a_session_but_not_into_a_closed_one(db):
    alice = _reader(db)
    s1 = reading.open_screen(db, alice)
    reading.submit(db, alice, s1.view, F.ANSWERS)
    s2 = reading.open_screen(db, alice)
    prev, msg = reading.go_back(db, alice, s2.view.assignment_id)
    assert prev == s1.view.assignment_id and msg is None
    back = reading.open_screen(db, alice, prev)
    assert back.answered and back.view.answers == F.ANSWERS
    out = reading.submit(db, alice, back.view, {"confidence": 1, "correct_feature": 1})
    assert out.saved and out.edited == 2 and out.next_id is None  # s2 is unanswered: resume point
    first, msg = reading.go_back(db, alice, s1.view.assignment_id)
    assert first is None and "first case of this session" in msg
    # an unanswered read cannot be requested directly: the resume point is shown instead
    with db.read() as s:
        later = s.scalars(select(Assignment).where(Assignment.reader_id == alice.id)
                          .order_by(Assignment.position.desc())).first()
    assert reading.open_screen(db, alice, later.id).view.assignment_id == s2.view.assignment_id
    # another reader's read is refused the same way (no data of theirs shown)
    bob = _reader(db, "bob")
    with db.read() as s:
        bobs = s.scalars(select(Assignment).where(Assignment.reader_id == bob.id)).first()
    assert reading.open_screen(db, alice, bobs.id).view.assignment_id == s2.view.assignment_id


def test_session_rows_describe_the_washout(db):
    alice = _reader(db)
    prog, nxt = reading.worklist(db, alice)
    rows = reading.session_rows(prog)
    assert [(r.session, r.status) for r in rows] == [(1, "open"), (2, "locked")]
    assert rows[1].detail == "opens after session 1 is finished"


def test_reader_progress_table(db):
    alice = _reader(db)
    screen = reading.open_screen(db, alice, now=dt.datetime(2026, 1, 1, 12, tzinfo=UTC))
    reading.submit(db, alice, screen.view, F.ANSWERS, now=dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC))
    table = research.reader_progress(db, "uitest").set_index("reader")
    assert table.loc["alice", "done"] == 1 and table.loc["alice", "total"] == 12
    assert table.loc["alice", "sessions"] == "S1: 1/6 · S2: 0/6"
    assert table.loc["alice", "median s per case"] == 30.0
    assert table.loc["bob", "done"] == 0 and pd.isna(table.loc["bob", "median s per case"])


def test_export_files_are_the_study_export(db):
    alice = _reader(db)
    reading.submit(db, alice, reading.open_screen(db, alice).view, F.ANSWERS)
    bundle = research.export_files(db, "uitest", include_simulated=False)
    assert bundle.n_rows == 2
    assert {"responses.csv", "responses.parquet", "study.json", "MANIFEST.sha256"} <= set(bundle.files)
    names = list(bundle.files)  # the answers first, the manifests after (the Export page's order)
    assert names[:2] == ["responses.csv", "responses.parquet"]
    assert max(names.index(m) for m in names if "anifest" not in m) < min(
        names.index(m) for m in names if "anifest" in m)
    csv = pd.read_csv(io.BytesIO(bundle.files["responses.csv"]))
    assert list(csv["rating"]) == [4, 2] and set(csv["reader"]) == {"alice"}
    assert json.loads(bundle.files["study.json"])["name"] == "uitest"
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes())) as z:
        assert set(z.namelist()) == set(bundle.files)


def test_add_readers_returns_working_links_and_refuses_duplicates(db):
    from cfviewer.study.errors import StudyError
    from cfviewer.study.tokens import authenticate

    links, note = research.add_readers(db, "uitest", ["carol", ""], "https://study.example/")
    assert [x.reader for x in links] == ["carol"] and "Scheduled 1 reader(s)" in note
    token = links[0].link.split("?token=")[1]
    assert links[0].link.startswith("https://study.example/?token=")
    with db.read() as s:
        assert authenticate(s, token).name == "carol"
    with pytest.raises(StudyError, match="listed twice"):
        research.add_readers(db, "uitest", ["x", "x"])
    with pytest.raises(StudyError, match="already has a reader"):
        research.add_readers(db, "uitest", ["carol"])


def test_eta_and_durations():
    eta = research.Eta(started=100.0)
    assert eta.remaining_seconds(now=110.0) is None and "estimating" in eta.text(now=110.0)
    eta.update(2, 10)
    assert eta.remaining_seconds(now=110.0) == pytest.approx(40.0)
    assert eta.text("case 3", now=110.0) == "2 of 10 case x arm · about 40 s left · case 3"
    assert research.format_duration(125) == "2 min 05 s"
    assert research.format_duration(3 * 3600 + 61) == "3 h 01 min"


def test_anchor_lines():
    assert research.parse_anchor_lines("1 - a\n\n 2 - b \n") == ["1 - a", "2 - b"]


def test_prefetch_warms_the_caches_for_the_next_case(db):
    from cfviewer.ui import viewer

    alice = _reader(db)
    screen = reading.open_screen(db, alice)
    with db.read() as s:
        nxt = reading.upcoming_read(s, alice, screen.view.assignment_id)
        assert nxt is not None and nxt.position == screen.view.position + 1
    viewer.clear_caches()
    reading.prefetch_next(db, alice, screen.view.assignment_id, wait=True)
    assert viewer._render_file.cache_info().currsize == 1
    assert viewer._render_overlay.cache_info().currsize >= 1
    hits = viewer._render_file.cache_info().hits
    reading.submit(db, alice, screen.view, F.ANSWERS)
    following = reading.open_screen(db, alice)
    assert following.view.assignment_id == nxt.id
    viewer.render_defaults(following.view.image, following.media)
    assert viewer._render_file.cache_info().hits == hits + 1  # served from the warm cache
    # a thread by default, and never an exception
    t = reading.prefetch_next(db, alice, following.view.assignment_id)
    t.join(30)
    assert not t.is_alive()
    assert reading.prefetch_next(db, alice, 10**9, wait=True) is None  # unknown read: ignored


def test_duration_counts_active_time_caps_idle_gaps_and_keeps_the_raw_time(db):
    """A case left open for 2.5 h is not 9,000 s of reading: every gap between two page runs
    (open, a control, Save) adds at most responses.IDLE_CAP_S; the raw time is kept as well."""
    from sqlalchemy import select

    from cfviewer.study.schema import Response

    alice = _reader(db)
    t0 = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
    cap = R.IDLE_CAP_S
    screen = reading.open_screen(db, alice, now=t0)  # shown: the count starts
    reading.open_screen(db, alice, now=t0 + dt.timedelta(seconds=30))  # a control: +30 s
    back = t0 + dt.timedelta(seconds=30 + 2 * 3600)  # 2 h away, then back: + the cap only
    reading.open_screen(db, alice, now=back)
    saved_at = back + dt.timedelta(seconds=20)  # 20 s more, then Save
    out = reading.submit(db, alice, screen.view, F.ANSWERS, now=saved_at)
    assert out.saved
    with db.read() as s:
        rows = s.scalars(select(Response).where(Response.assignment_id == screen.view.assignment_id)).all()
    assert {r.duration_s for r in rows} == {30 + cap + 20}
    assert {r.raw_duration_s for r in rows} == {(saved_at - t0).total_seconds()}
