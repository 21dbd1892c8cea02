"""Study planning on the setup page: readers x cases for the power the researcher wants, from the
study's own answers (a pilot) or the published Van Dyke components (cfviewer.analysis.sizing)."""

from __future__ import annotations

import streamlit as st


def pilot_components(db, name: str):
    """(components, description): the study's MRMC components of the confidence rating when its
    real readers' answers allow an analysis, else Van Dyke's."""
    from cfviewer.analysis import mrmc, sizing
    from cfviewer.errors import CfviewerError
    from cfviewer.ui import research

    try:
        df = research.responses_table(db, name, include_simulated=False)
        if not df.empty:
            first = mrmc.analyze_study(df, "confidence", by_pathology=False)[0]
            if first.result is not None:
                r = first.result
                return r.components, f"this study's answers so far ({len(r.readers)} readers, {r.n_cases} cases)"
    except CfviewerError:
        pass
    return sizing.VAN_DYKE, "the Van Dyke study (no analysable answers from real readers here yet)"


def study_size_panel(db, name: str) -> None:
    """Effect size, power and analysis in; the cases needed per number of readers and a power
    plot out."""
    from cfviewer.analysis import sizing

    comps, source = pilot_components(db, name)
    c1, c2, c3, c4 = st.columns(4)
    effect = c1.number_input("AUC difference to detect", min_value=0.005, max_value=0.5, value=0.05, step=0.005,
                             format="%.3f", help="Between the arms' reader-averaged AUCs of confidence (TP vs FP).")
    target = c2.slider("Power", 0.5, 0.95, 0.8, step=0.05)
    readers = c3.slider("Readers", 2, 30, (3, 15))
    option = c4.selectbox("Analysis", sizing.OPTIONS, index=0,
                          help="RRRC: readers and cases random (generalises to both; the default); FRRC: "
                               "these readers only; RRFC: these cases only.")
    st.caption(f"Variance components from {source} (Hillis, Obuchowski & Berbaum 2011).")
    rng = list(range(readers[0], readers[1] + 1))
    table = sizing.sizing_table(comps, effect, rng, target, option=option)
    table["cases"] = table["cases"].astype("Int64")
    left, right = st.columns([1, 2])
    left.dataframe(table, hide_index=True, width="stretch",
                   column_config={"power": st.column_config.NumberColumn(format="%.3f"),
                                  "ddf": st.column_config.NumberColumn(format="%.1f")})
    reachable = table["cases"].dropna()
    top = int(max(60, (int(reachable.max()) if len(reachable) else 600) * 1.3))
    step = max(1, top // 50)
    shown = rng[:: max(1, len(rng) // 5)]
    curve = sizing.power_curve(comps, effect, shown, list(range(10, top + 1, step)), option=option)
    right.plotly_chart(sizing.power_figure(curve, target), width="stretch", key="cfv_power_curve")
    if table["cases"].isna().any():
        st.caption("Empty cells: even 2,000 cases do not reach the power with that many readers "
                   "(the readers' own variability limits a random-reader study: add readers).")
