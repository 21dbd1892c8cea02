"""The reader API: resume point, progress, answers with history, Back, washout, tokens, export."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import func, select

from cfviewer.study import responses as R
from cfviewer.study import studies
from cfviewer.study.errors import ResponseError, SessionNotOpenError
from cfviewer.study.export import EXPORT_COLUMNS, export_study, responses_frame
from cfviewer.study.schema import Reader, Response, ResponseHistory
from cfviewer.study.tokens import InvalidTokenError, authenticate, hash_token, tokens_match
from test_study_support import build_study

ANS = {"confidence": 4, "correct_feature": 2}


@pytest.fixture()
def built(tmp_path):
    b = build_study(tmp_path, per_pathology=2)
    yield b
    b.db.dispose()


def _reader(b, name="r1") -> Reader:
    with b.db.read() as s:
        return s.get(Reader, b.reader_ids[name])


def _next(b, name="r1", now=None) -> R.NextRead:
    with b.db.read() as s:
        return R.next_assignment(s, _reader(b, name), now=now)


def test_tokens_are_stored_hashed_and_checked(built):
    tok = built.tokens["r1"]
    with built.db.read() as s:
        r = authenticate(s, tok)
        assert r.name == "r1" and r.token_hash == hash_token(tok) and tok not in r.token_hash
        for bad in ("", None, tok[:-1] + ("A" if tok[-1] != "A" else "B"), "x" * 500):
            with pytest.raises(InvalidTokenError):
                authenticate(s, bad)
    assert tokens_match(tok, hash_token(tok)) and not tokens_match(tok + "x", hash_token(tok))


def test_walk_through_a_whole_schedule(built):
    rid = built.reader_ids["r1"]
    seen = []
    while (nx := _next(built)).status == "ready":
        a = nx.assignment
        shown = R.mark_shown(built.db, rid, a.id)
        res = R.record_response(built.db, rid, a.id, ANS, comment=" fine ")
        assert (res.created, res.edited) == (2, 0) and res.submitted_at >= shown
        seen.append((a.position, a.session, a.case_id, a.arm_id))
    assert nx.status == "done"
    assert [p for p, *_ in seen] == list(range(1, 25))
    assert {s for _, s, *_ in seen} == {1, 2}
    # every cohort case once per arm, the two reads in different sessions
    by_case: dict[int, list[tuple[int, int]]] = {}
    for _, sess, case, arm in seen:
        by_case.setdefault(case, []).append((sess, arm))
    assert len(by_case) == 12 and all(len({a for _, a in v}) == 2 and len({s for s, _ in v}) == 2
                                      for v in by_case.values())
    with built.db.read() as s:
        prog = R.progress(s, _reader(built))
        assert (prog.done, prog.total, prog.finished) == (24, 24, True)
        assert [(x.done, x.total) for x in prog.sessions] == [(12, 12), (12, 12)]
        rows = list(s.scalars(select(Response).where(Response.reader_id == rid)))
    assert len(rows) == 48 and all(r.duration_s is not None and r.duration_s >= 0 for r in rows)
    # active time never exceeds the wall-clock span, which is kept beside it
    assert all(r.raw_duration_s is not None and r.duration_s <= r.raw_duration_s + 1e-6 for r in rows)
    assert all(r.comment == "fine" and not r.simulated for r in rows)


def test_idempotent_edits_keep_history(built):
    rid = built.reader_ids["r1"]
    a = _next(built).assignment
    R.record_response(built.db, rid, a.id, ANS)
    again = R.record_response(built.db, rid, a.id, ANS)
    assert (again.created, again.edited, again.unchanged) == (0, 0, 2)
    edit = R.record_response(built.db, rid, a.id, {"confidence": 5, "correct_feature": 2}, "changed my mind")
    assert (edit.created, edit.edited) == (0, 2)  # the comment changed on both rows
    with built.db.read() as s:
        hist = list(s.scalars(select(ResponseHistory).where(ResponseHistory.assignment_id == a.id)
                              .order_by(ResponseHistory.id)))
        answers, comment = R.current_answers(s, _reader(built), a.id)
        conf = s.scalars(select(Response).where(Response.assignment_id == a.id)).all()
    assert [h.action for h in hist] == ["create", "create", "edit", "edit"]
    assert [(h.old_value, h.new_value) for h in hist if h.action == "edit"] == [(4, 5), (2, 2)]
    assert answers == {"confidence": 5, "correct_feature": 2} and comment == "changed my mind"
    assert {r.revision for r in conf} == {2}


@pytest.mark.parametrize("answers, needle", [
    ({"confidence": 4}, "'correct_feature'"),
    ({"confidence": 6, "correct_feature": 1}, "from 1 to 5, got 6"),
    ({"confidence": 0, "correct_feature": 1}, "got 0"),
    ({"confidence": 2.5, "correct_feature": 1}, "got 2.5"),
    ({"confidence": "high", "correct_feature": 1}, "got 'high'"),
    ({"confidence": True, "correct_feature": 1}, "got True"),
    ({"confidence": 3, "correct_feature": 1, "extra": 3}, "unknown question(s) ['extra']"),
])
def test_bad_answers_are_refused_and_nothing_is_written(built, answers, needle):
    a = _next(built).assignment
    with pytest.raises(ResponseError, match="answer not saved") as ei:
        R.record_response(built.db, built.reader_ids["r1"], a.id, answers)
    assert needle in str(ei.value)
    with built.db.read() as s:
        assert s.scalar(select(func.count(Response.id))) == 0


def test_readers_cannot_answer_others_reads_or_skip_sessions(built):
    a1 = _next(built, "r1").assignment
    with pytest.raises(ResponseError, match="not one of this reader's reads"):
        R.record_response(built.db, built.reader_ids["r2"], a1.id, ANS)
    with built.db.read() as s:
        from cfviewer.study.schema import Assignment

        later = s.scalars(select(Assignment).where(Assignment.reader_id == built.reader_ids["r1"],
                                                   Assignment.session == 2)).first()
    with pytest.raises(ResponseError, match="finish session 1 first"):
        R.record_response(built.db, built.reader_ids["r1"], later.id, ANS)


def test_back_goes_to_the_previous_read_of_the_same_session(built):
    rid = built.reader_ids["r1"]
    first = _next(built).assignment
    R.record_response(built.db, rid, first.id, ANS)
    second = _next(built).assignment
    with built.db.read() as s:
        r = _reader(built)
        assert R.previous_assignment(s, r, second.id).id == first.id
        assert R.previous_assignment(s, r, first.id) is None
        assert R.previous_assignment(s, r, None).id == first.id
        view = R.read_view(s, r, first.id)
    assert view.answers == ANS and view.arm in ("Method A", "Method B") and view.position == 1
    assert view.total == 24 and view.missing_artifacts  # nothing precomputed in this test
    assert "gradient" not in repr(view.panels)


def test_min_gap_between_sessions_is_enforced(tmp_path):
    b = build_study(tmp_path, per_pathology=1, readers=("r1",), config={"min_gap_hours": 2.0})
    rid = b.reader_ids["r1"]
    t0 = dt.datetime(2030, 1, 1, 9, 0, tzinfo=dt.timezone.utc)
    k = 0
    while (nx := _next(b, now=t0)).status == "ready" and nx.session == 1:
        k += 1
        R.record_response(b.db, rid, nx.assignment.id, ANS, now=t0 + dt.timedelta(minutes=k))
    finished = t0 + dt.timedelta(minutes=k)
    assert k == 6
    waiting = _next(b, now=finished + dt.timedelta(minutes=5))
    assert waiting.status == "waiting" and waiting.session == 2
    assert waiting.opens_at == finished + dt.timedelta(hours=2)
    with b.db.read() as s:
        from cfviewer.study.schema import Assignment

        a2 = s.scalars(select(Assignment).where(Assignment.reader_id == rid, Assignment.session == 2)
                       .order_by(Assignment.position)).first()
        prog = R.progress(s, _reader(b))
    assert prog.sessions[1].opens_at == waiting.opens_at
    with pytest.raises(SessionNotOpenError, match="opens at"):
        R.record_response(b.db, rid, a2.id, ANS, now=finished + dt.timedelta(hours=1))
    # editing the finished session is still allowed before the next one starts ...
    with b.db.read() as s:
        last1 = R.previous_assignment(s, _reader(b), None)
    R.record_response(b.db, rid, last1.id, {"confidence": 1, "correct_feature": 1},
                      now=finished + dt.timedelta(hours=1))
    opened = finished + dt.timedelta(hours=2, seconds=1)
    assert _next(b, now=opened).status == "ready"
    R.record_response(b.db, rid, a2.id, ANS, now=opened)
    # ... but not after it started (washout)
    with pytest.raises(ResponseError, match="closed"):
        R.record_response(b.db, rid, last1.id, ANS, now=opened)
    b.db.dispose()


def test_export_long_format_and_manifest(built, tmp_path):
    rid = built.reader_ids["r2"]
    for _ in range(5):
        a = _next(built, "r2").assignment
        R.record_response(built.db, rid, a.id, ANS)
    with built.db.read() as s:
        st = studies.get_study(s, built.name)
        df = responses_frame(s, st)
        res = export_study(s, st, tmp_path / "out")
    assert tuple(df.columns) == EXPORT_COLUMNS and len(df) == 10
    assert set(df["stratum"]) <= {"TP", "FP"} and set(df["question"]) == set(ANS)
    assert df["methods"].iloc[0] in ("gradient+guided_backprop+integrated_gradients", "latentshift-max")
    assert df["order"].tolist() == sorted(df["order"].tolist())
    with built.db.read() as s:
        first = s.scalars(select(Response).order_by(Response.id)).first()
    assert df["submitted_at"].iloc[0] == pd.Timestamp(first.submitted_at)
    assert str(df["submitted_at"].dt.tz) == "UTC" and df["duration_s"].isna().all()  # never marked shown
    back = pd.read_parquet(tmp_path / "out/responses.parquet")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    csv = pd.read_csv(tmp_path / "out/responses.csv")
    assert list(csv.columns) == list(EXPORT_COLUMNS) and len(csv) == 10
    manifest = (tmp_path / "out/MANIFEST.sha256").read_text().splitlines()
    assert len(manifest) == 3 and res.n_rows == 10
    import hashlib

    for line in manifest:
        digest, name = line.split("  ")
        assert hashlib.sha256((tmp_path / "out" / name).read_bytes()).hexdigest() == digest
