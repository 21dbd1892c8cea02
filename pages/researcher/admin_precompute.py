"""Precompute every explanation readers will see, with a progress bar and time left."""

import streamlit as st

from cfviewer.errors import CfviewerError
from cfviewer.ui import research, shell

s, name = shell.researcher_sidebar()
shell.require_study(s, name)
st.title("Precompute")
st.markdown("Every case of the cohort is explained under every arm once, here, so reader pages only read "
            "files. Up-to-date results are skipped, so running it again resumes where it stopped.")

try:
    status = research.precompute_status(s.db, name, verify=False)
except CfviewerError as exc:
    st.error(str(exc))
    st.stop()
c1, c2, c3 = st.columns(3)
c1.metric("Case x arm ready", f"{status.complete_units} / {status.expected_units}")
c2.metric("Files", status.files)
c3.metric("Missing", status.expected_units - status.complete_units)
if status.expected_units == 0:
    st.info("No cohort or no arms yet: sample the cohort on Study setup first.")
    st.stop()

force = st.checkbox("Recompute everything (ignore up-to-date results)")
verify = st.checkbox("Re-check every file's SHA-256 first")
if verify:
    checked = research.precompute_status(s.db, name, verify=True)
    if checked.problems:
        st.warning(f"{len(checked.problems)} file problem(s); precompute repairs them:")
        st.dataframe({"problem": checked.problems}, hide_index=True, width="stretch")
    else:
        st.success("Every file matches its recorded SHA-256.")

if st.button("Run precompute", type="primary", icon=":material/play_arrow:"):
    st.caption("Leaving this page stops after the current case; running it again resumes.")
    eta = research.Eta()
    bar = st.progress(0.0, text="Loading the model ...")

    def progress(done, total, label):
        eta.update(done, total)
        bar.progress(eta.fraction, text=eta.text(label))

    try:
        rep = research.run_precompute(s.db, name, progress=progress, force=force)
    except CfviewerError as exc:
        st.error(f"Precompute stopped: {exc}")
    else:
        bar.progress(1.0, text=f"Done in {research.format_duration(rep.seconds)}")
        (st.warning if rep.failed else st.success)(str(rep).splitlines()[0])
        if rep.failed:
            st.dataframe({"failed": rep.failed}, hide_index=True, width="stretch")
