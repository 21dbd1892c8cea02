"""A study's cases by key and its cohort in drawing order (what the explainer sandbox offers)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from cfviewer.study.errors import StudyError
from cfviewer.study.schema import Case, CohortItem
from cfviewer.study.studies import get_study


def cohort_cases(db, name: str) -> list[tuple[str, str, str]]:
    """(case key, pathology judged, TP/FP) of the study's cohort, in drawing order."""
    with db.read() as s:
        st = get_study(s, name)
        return [(k, p, t) for k, p, t in s.execute(
            select(Case.case_key, CohortItem.pathology, CohortItem.stratum)
            .join(Case, Case.id == CohortItem.case_id)
            .where(CohortItem.study_id == st.id).order_by(CohortItem.position))]


def case_image(db, name: str, case_key: str) -> np.ndarray:
    """The pixels of the study's case `case_key` (cohort.load_case_image: refuses a changed file)."""
    from cfviewer.study.cohort import load_case_image

    with db.read() as s:
        st = get_study(s, name)
        case = s.scalars(select(Case).where(Case.study_id == st.id, Case.case_key == case_key)).first()
        if case is None:
            raise StudyError(f"study {name!r} has no case {case_key!r}; pick one of its cohort's cases "
                             "(or import it with `cfviewer study import`)")
        return load_case_image(st, case)
