"""Analysis: paired Wilcoxon tests between two arms per stratum (Holm within the declared primary
analysis), the MRMC analysis of readers' confidence (TP vs FP), descriptives, agreement and
Plotly figures (cfviewer.analysis), over the study's answers."""

import streamlit as st

from cfviewer.analysis import STRATUM_KINDS, ZERO_METHODS
from cfviewer.csvsafe import csv_text
from cfviewer.errors import CfviewerError
from cfviewer.ui import research, resources, shell

s, name = shell.researcher_sidebar()
shell.require_study(s, name)
st.title("Analysis")

SIM_KEY = "analysis_include_simulated"


def _include_simulated() -> None:
    st.session_state[SIM_KEY] = True


sim = st.checkbox("Include simulated readers' answers", value=False, key=SIM_KEY,
                  help="Simulated readers' answers exist only to try the analysis: they are left out unless "
                       "this is ticked, and every result that includes them is marked. Never report them.")
counts = research.answer_counts(s.db, name)
df = research.responses_table(s.db, name, include_simulated=sim)
if df.empty:
    if counts.simulated and not sim:
        k = len(counts.simulated_readers)
        st.info(f"No answers from real readers yet in study {name!r}. Its {counts.simulated} answers come from "
                f"{k} simulated reader(s) ({', '.join(counts.simulated_readers)}), which the analysis leaves out "
                "unless you include them.", icon=":material/hourglass_empty:")
        st.button(f"Include the {counts.simulated} simulated answers (to try the analysis)",
                  on_click=_include_simulated, icon=":material/science:", key="include_simulated_now")
    else:
        st.info(f"No answers yet in study {name!r}: the analysis appears here once readers have submitted "
                "answers (see Progress).", icon=":material/hourglass_empty:")
    st.stop()
n_sim = int(df["simulated"].sum())
if n_sim:
    sim_readers = sorted(df.loc[df["simulated"], "reader"].unique())
    st.warning(f"**SIMULATED answers included.** {n_sim} of these {len(df)} answers come from {len(sim_readers)} "
               f"simulated reader(s) ({', '.join(sim_readers)}). They exist only to try the analysis: never report "
               "these results.", icon=":material/science:")
elif counts.simulated:
    st.caption(f"{counts.simulated} simulated answer(s) from {len(counts.simulated_readers)} simulated reader(s) "
               "are left out.")
arms = sorted(df["arm"].unique())
questions = list(dict.fromkeys(df["question"]))
if len(arms) < 2:
    st.info(f"Answers exist for one arm only ({arms[0]}); the comparison needs two.")
    st.stop()
c1, c2, c3, c4 = st.columns(4)
arm_a = c1.selectbox("Reference arm (A)", arms, index=0)
arm_b = c2.selectbox("Compared arm (B)", [a for a in arms if a != arm_a], index=0)
zero = c3.selectbox("Zero differences (Wilcoxon)", ZERO_METHODS, index=ZERO_METHODS.index("pratt"),
                    help="pratt: zeros ranked then dropped (default); wilcox: dropped before ranking; "
                         "zsplit: ranks split between signs.")
n_boot = c4.select_slider("Bootstrap resamples (CI of r)", [200, 500, 1000, 2000, 5000], value=2000)
d1, d2 = st.columns(2)
qsel = d1.multiselect("Questions", questions, default=questions)
strata = d2.multiselect("Strata", list(STRATUM_KINDS), default=list(STRATUM_KINDS),
                        help="all; stratum = true vs false positives; pathology; reader; case_mean = "
                             "per-case means over readers.")
if not qsel or not strata:
    st.warning("Choose at least one question and one stratum.")
    st.stop()
declared = dict(research.overview(s.db, name).config.get("primary_analysis") or {})
p_strata = tuple(x for x in (declared.get("strata") or ["all"]) if x in strata) or ("all",)
p_questions = tuple(q for q in (declared.get("questions") or []) if q in qsel) or None
try:
    rep = resources.analysis_report(s.ctx.db_url, name, research.data_version(s.db, name), sim, arm_a, arm_b,
                                    tuple(qsel), tuple(strata), zero, int(n_boot), p_strata, p_questions)
except CfviewerError as exc:
    st.error(str(exc))
    st.stop()

st.caption(f"{rep.title}. "
           f"{len(df)} answers from {df['reader'].nunique()} reader(s) on {df['case'].nunique()} cases. "
           f"Differences are {arm_b} − {arm_a} per reader, case and question. Primary (confirmatory) analysis: "
           f"{', '.join(p_strata)} × {', '.join(p_questions) if p_questions else 'every question'}; p_holm is "
           "Holm-adjusted within it, and separately within the exploratory rows (column family).")
mrmc_tables = rep.mrmc_tables()
tabs = st.tabs(["Paired tests", "MRMC (TP vs FP)", "Figures", "Descriptives", "Agreement"])
with tabs[0]:
    st.dataframe(rep.comparison, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3g")
                                for c in ("p", "p_holm", "statistic")})
with tabs[1]:
    if not mrmc_tables:
        st.info("The MRMC analysis needs the 'confidence' question and both arms' answers.")
    else:
        st.caption("Can readers tell the model's true positives from its false positives by their confidence, "
                   "and better with one explanation than the other? Each reader's confidence is a score for "
                   "'the prediction is right' (AUC per reader and arm); the arms are compared with the "
                   "Obuchowski-Rockette / Hillis analysis, readers and cases random (as OR-DBM MRMC).")
        st.dataframe(mrmc_tables["mrmc"].drop(columns=["simulated_included"], errors="ignore"), hide_index=True,
                     width="stretch", column_config={c: st.column_config.NumberColumn(format="%.4f")
                                                     for c in ("difference", "ci_low", "ci_high", "p")})
        if "roc" in rep.figures:
            st.plotly_chart(rep.figures["roc"], width="stretch", key="fig_roc_mrmc")
        with st.expander("Reader AUCs, variance components and all three analyses"):
            for stem in ("mrmc_auc", "mrmc_components", "mrmc_tests", "mrmc_differences"):
                if stem in mrmc_tables:
                    st.dataframe(mrmc_tables[stem].drop(columns=["simulated_included"], errors="ignore"),
                                 hide_index=True, width="stretch")
        st.download_button("Download the MRMC tables (CSV)", data=csv_text(mrmc_tables["mrmc"], index=False),
                           file_name=f"{name}_mrmc{'_with_simulated' if rep.includes_simulated else ''}.csv",
                           mime="text/csv", icon=":material/download:")
with tabs[2]:
    for key, fig in rep.figures.items():
        if key != "roc":
            st.plotly_chart(fig, width="stretch", key=f"fig_{key}")
with tabs[3]:
    st.dataframe(rep.summary, hide_index=True, width="stretch")
with tabs[4]:
    st.markdown("**Quadratic weighted kappa between readers**")
    st.dataframe(rep.kappa, hide_index=True, width="stretch")
    st.markdown("**Krippendorff's alpha (ordinal)**")
    st.dataframe(rep.alpha, hide_index=True, width="stretch")
