"""Case viewer: the radiograph large with window/level and zoom, the prediction, the arm's
explanations side by side, the Likert questions; Save and next / Back."""

import html

import streamlit as st

from cfviewer.errors import CfviewerError
from cfviewer.ui import components, reading, shell

s = shell.require_reader()
reader = s.reader
VIEW_KEY = "cfv_view"  # the read reached with Back (None: the resume point from the database)

try:
    screen = reading.open_screen(s.db, reader, st.session_state.get(VIEW_KEY))
except CfviewerError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

if screen.kind == "empty":
    st.info("No cases are assigned to you yet.", icon=":material/hourglass_empty:")
    st.stop()
if screen.kind == "done":
    components.progress_header(screen.progress, screen.session, screen.sessions_total)
    st.success("You have answered every case. Thank you for taking part!", icon=":material/celebration:")
    if st.button("Review the last answer", icon=":material/arrow_back:"):
        prev, msg = reading.go_back(s.db, reader, None)
        st.session_state[VIEW_KEY] = prev
        st.rerun()
    st.stop()
if screen.kind == "waiting":
    components.progress_header(screen.progress, screen.session, screen.sessions_total)
    st.info(f"Session {screen.session - 1} is finished. Session {screen.session} opens "
            f"{reading.format_when(screen.opens_at)} (washout). Please come back then with the same link.",
            icon=":material/schedule:")
    st.stop()

view = screen.view
components.progress_header(screen.progress, view.session, screen.sessions_total,
                           f"Case {view.position} of {view.total}")
head_l, head_r = st.columns([3, 1], vertical_alignment="center")
head_l.markdown(f"#### {reading.prediction_sentence(view.pathology, view.probability)}")
head_r.markdown(f"<div style='text-align:right'><b>{html.escape(view.arm)}</b>"
                f"{' · reviewing a saved answer' if screen.answered else ''}</div>", unsafe_allow_html=True)
if view.missing_artifacts:
    st.warning("Some prepared images of this case are missing. Answer from what is shown and say so in "
               "the comment, or tell the researcher.", icon=":material/broken_image:")

left, right = st.columns([1.05, 1], gap="medium")
try:
    with left:
        components.image_viewer(view, screen.media)
    with right:
        components.explanation_tiles(view, screen.media)
except CfviewerError as exc:
    st.error(str(exc), icon=":material/broken_image:")

if not screen.answered:  # warm the caches for the next case while this one is read
    reading.prefetch_next(s.db, reader, view.assignment_id, st.session_state.get("cfv_opacity", 0.6))

with right:
    submitted, answers, comment = components.answer_form(view)
    if submitted:
        out = reading.submit(s.db, reader, view, answers, comment)
        if out.saved:
            st.session_state[VIEW_KEY] = out.next_id
            st.toast("Answers saved" + (" (changed)" if out.edited else ""), icon=":material/check:")
            st.rerun()
        st.error(out.message, icon=":material/priority_high:")
    if st.button("Back", icon=":material/arrow_back:", key="cfv_back",
                 help="The previous case of this session; your answers there can still be changed."):
        prev, msg = reading.go_back(s.db, reader, view.assignment_id)
        if prev is None:
            st.warning(msg)
        else:
            st.session_state[VIEW_KEY] = prev
            st.rerun()
