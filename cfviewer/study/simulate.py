"""Simulated readers, so the analysis pages have data before real readers answer.

Simulated readers are ordinary readers flagged `simulated`; their answers go through
`responses.record_response` (same validation, history and session rules) and carry
`simulated=True` all the way into the export. Never mix them into a real analysis:
`cfviewer study export` and `cfviewer study analyze` leave them out unless given
`--include-simulated`, and label every output that includes them.

The rating model (ordinal, 1..5): latent = question/stratum/arm mean + reader bias + case effect
(shared by both arms of the same case, so the pairs correlate as real ones do) + noise, rounded
and clipped. Means (plausible, in the direction the Gifsplanation study hoped for; NOT data):

    confidence        TP: A 3.6, B 3.9     FP: A 3.0, B 2.5   (B exposes false positives)
    correct_feature   TP: A 3.1, B 3.7     FP: A 2.5, B 2.2
Other questions: 3.0 everywhere. Arms are matched by position (first arm = "A").

One rating model, two ways to use it: `simulate_readers` answers a real study's schedule
through the reader API (the demo, the screenshots, the tests of the pages); `simulate_frame`
draws a whole long-format table directly, without a database (the analysis tests and the
analysis benchmark, which need 100,000 answers in a second).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

import pandas as pd

from cfviewer import PATHOLOGIES
from cfviewer.study import responses
from cfviewer.study.db import Database
from cfviewer.study.reference import QUESTION_KEYS
from cfviewer.study.schema import Assignment, Reader, Response, utcnow
from cfviewer.study.studies import add_readers, get_study

MEANS: dict[str, dict[tuple[str, int], float]] = {
    "confidence": {("TP", 0): 3.6, ("TP", 1): 3.9, ("FP", 0): 3.0, ("FP", 1): 2.5},
    "correct_feature": {("TP", 0): 3.1, ("TP", 1): 3.7, ("FP", 0): 2.5, ("FP", 1): 2.2},
}
READER_SD, CASE_SD, NOISE_SD = 0.3, 0.5, 0.6


def mean_rating(question: str, stratum: str, arm_index: int) -> float:
    """The model's mean for a question, a stratum ("TP" / "FP") and an arm position (0 = "A")."""
    return MEANS.get(question, {}).get((stratum, int(arm_index)), 3.0)


def draw_ratings(mean, reader_bias, case_effect, rng: np.random.Generator) -> np.ndarray:
    """Ratings 1..5: round(mean + reader bias + case effect + noise), clipped (all broadcast)."""
    latent = np.asarray(mean, float) + reader_bias + case_effect
    latent = latent + rng.normal(0, NOISE_SD, np.shape(latent))
    return np.clip(np.rint(latent), 1, 5).astype(np.int64)


@dataclass(frozen=True)
class SimulationReport:
    readers: list[str]
    reads: int
    answers_created: int


def simulate_readers(db: Database, study_name: str, n_readers: int = 2, seed: int = 0,
                     prefix: str = "simulated") -> SimulationReport:
    """Add `n_readers` simulated readers (if missing), schedule them and answer every read.
    Running it again completes unfinished simulated readers and adds nothing else."""
    from cfviewer.study.design import build_schedule

    names = [f"{prefix}-{i + 1}" for i in range(n_readers)]
    with db.write() as s:
        st = get_study(s, study_name)
        have = {r.name for r in st.readers}
        add_readers(s, st, [n for n in names if n not in have], simulated=True)
        build_schedule(s, st)
        arm_index = {a.id: i for i, a in enumerate(st.arms)}
        readers = [r for r in st.readers if r.name in names]
        reader_ids = {r.name: r.id for r in readers}
        questions = [q.key for q in st.questions]
        gap = dt.timedelta(hours=float(st.config.get("min_gap_hours", 0) or 0))
    ss = np.random.SeedSequence([seed, 7])
    case_rng = np.random.default_rng(ss.spawn(1)[0])
    reads = created = 0
    case_effect: dict[tuple[int, str], float] = {}
    for name in names:
        rid = reader_ids[name]
        rng = np.random.default_rng(np.random.SeedSequence([seed, rid]))
        bias = rng.normal(0, READER_SD)
        with db.read() as s:
            plan = list(s.execute(select(Assignment).where(Assignment.reader_id == rid)
                                  .order_by(Assignment.position)).scalars())
            strata = {a.id: a.cohort.stratum for a in plan}
            n_sessions = max((a.session for a in plan), default=1)
        # a timeline in the past: ~30 s per read, sessions separated by the washout gap + 1 h
        clock = utcnow() - (len(plan) * dt.timedelta(seconds=60) + n_sessions * (gap + dt.timedelta(hours=1)))
        last_session = 1
        with db.read() as s:
            done = set(s.scalars(select(Response.assignment_id).where(Response.reader_id == rid)))
        for a in plan:
            if a.session != last_session:
                clock += gap + dt.timedelta(hours=1)
                last_session = a.session
            shown = clock
            clock += dt.timedelta(seconds=float(rng.gamma(4.0, 8.0)))
            if a.id in done:
                continue
            answers = {}
            for q in questions:
                key = (a.case_id, q)
                if key not in case_effect:
                    case_effect[key] = case_rng.normal(0, CASE_SD)
                mean = mean_rating(q, strata[a.id], arm_index[a.arm_id])
                answers[q] = int(draw_ratings(mean, bias, case_effect[key], rng))
            res = responses.record_response(db, rid, a.id, answers, shown_at=shown, now=clock,
                                            simulated=True)
            reads += 1
            created += res.created
    return SimulationReport(names, reads, created)


def simulated_reader_names(db: Database, study_name: str) -> list[str]:
    with db.read() as s:
        st = get_study(s, study_name)
        return [r.name for r in s.scalars(select(Reader).where(Reader.study_id == st.id, Reader.simulated))]


def simulate_frame(n_readers: int = 10, n_cases: int = 2500, arms=("Method A", "Method B"),
                   questions=QUESTION_KEYS, seed: int = 0) -> pd.DataFrame:
    """A long-format answer table (the export's analysis columns, `simulated` True) drawn from
    the same rating model without a database: every reader rates every case in every arm on
    every question. Cases cycle through the six pathologies; every third case (0, 3, ...) is a
    false positive. Readers are named "reader0", "reader1", ...; cases are numbered 0..n-1."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 8]))
    n_arms, n_q = len(arms), len(questions)
    reader_bias = rng.normal(0, READER_SD, n_readers)
    case_effect = rng.normal(0, CASE_SD, (n_cases, n_q))  # shared by both arms of a case
    r, c, a, q = (g.ravel() for g in np.meshgrid(
        np.arange(n_readers), np.arange(n_cases), np.arange(n_arms), np.arange(n_q), indexing="ij"))
    stratum = np.where(c % 3 == 0, "FP", "TP")
    means = np.array([[[mean_rating(key, st, k) for key in questions] for k in range(n_arms)]
                      for st in ("TP", "FP")])  # (stratum, arm, question)
    mean = means[(stratum == "FP").astype(int), a, q]
    rating = draw_ratings(mean, reader_bias[r], case_effect[c, q], rng)
    pathologies = np.asarray(PATHOLOGIES)
    return pd.DataFrame({
        "reader": np.char.add("reader", r.astype(str)),
        "case": c,
        "arm": np.asarray(arms)[a],
        "pathology": pathologies[c % len(pathologies)],
        "stratum": stratum,
        "question": np.asarray(questions)[q],
        "rating": rating,
        "simulated": True,
    })
