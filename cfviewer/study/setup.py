"""Setting a study up, one call per step, as `cfviewer study ...` and the Study setup page do it:
create it with its arms and questions, import cases, draw the cohort, add readers (with their
links) and schedule them.

Each function takes the open `Database` and the study's name and runs one write transaction
(all or nothing). Every input is checked here, in the engine (`cfviewer.study.studies`:
`check_arms`, `check_pathologies`, `check_reader_names`, `set_questions`), so both front ends
refuse the same bad input with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy import select

from cfviewer.study import studies
from cfviewer.study.errors import ReaderNameError, StudyError
from cfviewer.study.reference import DEFAULT_QUESTIONS, reference_arms
from cfviewer.study.schema import CohortItem

ArmSpec = tuple[str, Sequence[dict[str, Any] | str]]
"""(display name, explainers): names or {"name": ..., "params": {...}} dicts."""


@dataclass(frozen=True)
class NewStudy:
    name: str
    arms: list[tuple[str, list[str]]]  # (display name, explainer names)


def new_study(db, name: str, root: str | Path, *, seed: int = 0, config: dict[str, Any] | None = None,
              arms: Sequence[ArmSpec] | None = None,
              questions: Sequence[dict[str, Any]] = DEFAULT_QUESTIONS) -> NewStudy:
    """A new study with its arms (default: the reference study's, `reference.REFERENCE_ARMS`)
    and questions in one transaction. The arms are checked before anything is written
    (display names non-empty and unique, explainers known); the name, settings, bundle,
    pathologies and questions by `studies.create_study` / `set_questions` (then nothing is
    written either)."""
    checked = studies.check_arms(reference_arms() if arms is None else list(arms))
    with db.write() as s:
        st = studies.create_study(s, name, root, seed=int(seed), config=config, questions=questions)
        for arm_name, methods in checked:
            studies.add_arm(s, st, arm_name, methods)
    return NewStudy(name, [(a, [m["name"] for m in methods]) for a, methods in checked])


def import_cases(db, name: str, folder: str | Path, labels_csv: str | Path, **options: Any):
    """`cohort.import_cases` in one write transaction (all or nothing); returns its report."""
    from cfviewer.study import cohort

    with db.write() as s:
        return cohort.import_cases(s, studies.get_study(s, name), folder, labels_csv, **options)


def sample_cohort(db, name: str, bundle, *, bundle_id: str, bundle_setting: str | None = None,
                  **options: Any):
    """`cohort.sample_cohort` in one write transaction; `bundle_setting` (optional) is stored as
    the study's bundle folder in the same transaction. Returns the sampling report."""
    from cfviewer.study import cohort

    with db.write() as s:
        st = studies.get_study(s, name)
        if bundle_setting is not None:
            studies.update_config(s, st, bundle=bundle_setting)
        return cohort.sample_cohort(s, st, bundle, bundle_id=bundle_id, **options)


@dataclass(frozen=True)
class ReadersAdded:
    links: list[tuple[str, str]]  # (reader, link): shown once, only token hashes are stored
    schedule: Any | None  # design.ScheduleSummary; None: no cohort yet (scheduled after sampling)


def _schedule(s, st, rebuild: bool):
    from cfviewer.study import design

    has_cohort = s.scalars(select(CohortItem.id).where(CohortItem.study_id == st.id).limit(1)).first()
    if not has_cohort or not st.readers:
        if rebuild:
            raise StudyError("nothing to schedule: sample a cohort and add readers first")
        return None
    return design.build_schedule(s, st, rebuild=rebuild)


def add_readers(db, name: str, names: Sequence[str], *, base_url: str | None = None,
                reschedule: bool = False) -> ReadersAdded:
    """Add readers (names checked: at least one, none empty, none twice, none already in the
    study) and, once a cohort exists, schedule everyone without a schedule (`reschedule`:
    rebuild every schedule, refused once answers exist). Links use `base_url`, else the
    study's app_url."""
    from cfviewer.study.tokens import reader_link

    names = list(names)
    if not names:
        raise ReaderNameError("give at least one reader name (one per line)")
    with db.write() as s:
        st = studies.get_study(s, name)
        new = studies.add_readers(s, st, names)
        summary = _schedule(s, st, reschedule)
        base = base_url or st.config.get("app_url") or studies.DEFAULT_CONFIG["app_url"]
        links = [(n.reader.name, reader_link(n.token, base)) for n in new]
    return ReadersAdded(links, summary)


def schedule_readers(db, name: str, *, rebuild: bool = False):
    """Schedule every reader who has none yet (after sampling); `rebuild`: every reader again
    (refused once answers exist). Returns design.ScheduleSummary, or None when the study has
    no readers or no cohort yet (with `rebuild`: refused)."""
    with db.write() as s:
        return _schedule(s, studies.get_study(s, name), rebuild)
