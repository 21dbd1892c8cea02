"""Process-wide resources shared by every browser session (st.cache_resource): the study
database engine and model bundles. Nothing per-reader is cached here."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cfviewer.study.db import Database, open_database


@st.cache_resource(show_spinner=False)
def database(url: str) -> Database:
    """The open study database for `url` (schema upgraded once per process)."""
    return open_database(url)


@st.cache_resource(show_spinner="Loading the model bundle ...", max_entries=4)
def bundle(directory: str, device: str = "auto"):
    """A model bundle (researcher pages only: the sandbox and precompute run models)."""
    from cfviewer.models.bundle import Bundle

    return Bundle.load(Path(directory), device=device)


def clear() -> None:
    """Forget cached engines and bundles (after a study database was created or replaced)."""
    database.clear()
    bundle.clear()


@st.cache_data(show_spinner="Computing the statistics ...", max_entries=16)
def analysis_report(url: str, study: str, version: tuple, include_simulated: bool, arm_a: str, arm_b: str,
                    questions: tuple[str, ...], strata: tuple[str, ...], zero_method: str, n_boot: int,
                    primary_strata: tuple[str, ...] = ("all",), primary_questions: tuple[str, ...] | None = None):
    """cfviewer.analysis.analyze over the study's export, cached until an answer changes
    (`version` = research.data_version); Holm adjusts within the declared primary analysis."""
    from cfviewer.analysis import analyze
    from cfviewer.ui import research

    df = research.responses_table(database(url), study, include_simulated)
    return analyze(df, arm_a, arm_b, questions=list(questions) or None, strata=strata,
                   zero_method=zero_method, n_boot=n_boot, include_simulated=include_simulated,
                   study=study, include_hint="tick 'Include simulated readers' answers'",
                   primary_strata=primary_strata,
                   primary_questions=list(primary_questions) if primary_questions else None)
