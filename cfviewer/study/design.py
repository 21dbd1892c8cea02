"""The crossover reading schedule.

Every reader reads every cohort case once under every arm. For each reader:

* arm order: row `i mod rows` of a balanced Latin square (Williams design) over the arms, `i` =
  the reader's index in the study (order of creation), so arm orders are counterbalanced across
  readers (2 arms: A-B, B-A, A-B, ...) and, for an even number of arms, each arm follows every
  other arm equally often;
* case order: a fresh random permutation of the cohort in each arm block, drawn from the reader's
  seed (`SeedSequence([study.seed, reader.id])`), which is stored on every assignment;
* washout: each arm block is its own session (or `sessions_per_arm` sessions), so the two reads
  of one case are always in different sessions; `min_gap_hours` (enforced by
  `responses.next_assignment`) keeps a later session closed until that long after the previous
  session's last answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cfviewer.study.errors import StudyError
from cfviewer.study.schema import Assignment, CohortItem, Reader, Response, Study


def williams_square(n: int) -> list[list[int]]:
    """Rows of a balanced Latin square for n treatments (2n rows when n is odd)."""
    if n < 1:
        raise ValueError("need at least one arm")
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    if n % 2 == 1 and n > 1:
        rows += [list(reversed(r)) for r in rows]
    return rows


def reader_seed(study: Study, reader: Reader) -> int:
    return int(np.random.SeedSequence([int(study.seed), int(reader.id)]).generate_state(1)[0] & 0x7FFFFFFF)


@dataclass(frozen=True)
class ScheduleSummary:
    readers_scheduled: int
    assignments_added: int
    reads_per_reader: int
    sessions_per_reader: int


def build_schedule(session: Session, study: Study, *, rebuild: bool = False) -> ScheduleSummary:
    """Create the assignments of every reader who has none (all readers with `rebuild=True`,
    which is refused once any answer exists)."""
    arms = list(study.arms)
    readers = list(session.scalars(select(Reader).where(Reader.study_id == study.id).order_by(Reader.id)))
    cohort = list(session.scalars(
        select(CohortItem).where(CohortItem.study_id == study.id).order_by(CohortItem.position)))
    if not arms:
        raise StudyError(f"study {study.name!r} has no arms yet: add one (e.g. `cfviewer study create --arm`)")
    if not cohort:
        raise StudyError(f"study {study.name!r} has no cohort yet: run `cfviewer study sample` first")
    if rebuild:
        n_answers = session.scalar(
            select(func.count(Response.id)).join(Reader, Reader.id == Response.reader_id)
            .where(Reader.study_id == study.id))
        if n_answers:
            raise StudyError(
                f"study {study.name!r} already has {n_answers} answers; the schedule can no longer change")
        session.execute(delete(Assignment).where(Assignment.study_id == study.id))
        session.flush()
    have = set(session.scalars(select(Assignment.reader_id).where(Assignment.study_id == study.id).distinct()))
    cohort_ids = {c.id for c in cohort}
    if have:
        scheduled = set(session.scalars(
            select(Assignment.cohort_id).where(Assignment.study_id == study.id).distinct()))
        if scheduled != cohort_ids:
            raise StudyError(
                f"the cohort of study {study.name!r} changed after readers were scheduled; "
                "rebuild the schedule (`cfviewer study readers --reschedule`) before anyone answers")
    square = williams_square(len(arms))
    per_arm = int(study.config.get("sessions_per_arm", 1))
    if per_arm > len(cohort):
        raise StudyError(f"sessions_per_arm={per_arm} is larger than the cohort ({len(cohort)} cases)")
    added = 0
    n_sched = 0
    for idx, reader in enumerate(readers):
        if reader.id in have:
            continue
        seed = reader_seed(study, reader)
        rng = np.random.default_rng(seed)
        position, sess = 0, 0
        for arm_idx in square[idx % len(square)]:
            arm = arms[arm_idx]
            order = rng.permutation(len(cohort))
            for chunk in np.array_split(order, per_arm):
                sess += 1
                for k in chunk:
                    item = cohort[int(k)]
                    position += 1
                    session.add(Assignment(
                        study_id=study.id, reader_id=reader.id, case_id=item.case_id, arm_id=arm.id,
                        cohort_id=item.id, session=sess, position=position, seed=seed))
                    added += 1
        n_sched += 1
    session.flush()
    return ScheduleSummary(n_sched, added, len(cohort) * len(arms), per_arm * len(arms))
