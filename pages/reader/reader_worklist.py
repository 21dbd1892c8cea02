"""Reader worklist: progress overall and per session, the washout sessions, Continue."""

import streamlit as st

from cfviewer.ui import components, reading, shell

s = shell.require_reader()
reader = s.reader
prog, nxt = reading.worklist(s.db, reader)

st.title(f"Welcome, {reader.name}")
if prog.total == 0:
    st.info("No cases are assigned to you yet. The researcher will tell you when the study starts.",
            icon=":material/hourglass_empty:")
    st.stop()

components.progress_header(prog, nxt.session, len(prog.sessions))
st.markdown(
    "You read each case once per session; the same case comes back in a later session with a "
    "different explanation method, so sessions are kept apart (washout). Answer every question "
    "to move on; you can go **Back** within a session to change an answer. Your answers are "
    "saved on the server after every case, so you can stop at any time and come back with "
    "the same link.")
st.subheader("Sessions")
components.session_table(reading.session_rows(prog))

if nxt.status == "done":
    st.success("You have answered every case. Thank you for taking part!", icon=":material/celebration:")
elif nxt.status == "waiting":
    st.info(f"Session {nxt.session} opens {reading.format_when(nxt.opens_at)}. "
            "Please come back then with the same link.", icon=":material/schedule:")
else:
    label = ("Start reading" if prog.done == 0
             else f"Continue with case {nxt.assignment.position} of {prog.total}")
    if st.button(label, type="primary", icon=":material/play_arrow:", key="continue"):
        st.session_state.pop("cfv_view", None)  # the resume point, not a case reached with Back
        st.switch_page(shell.reader_pages()[1])
