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
components.case_frame(view.assignment_id)  # every case opens at its top, all of it on one screen
MISSING_KEY = f"cfv_missing_{view.assignment_id}"  # questions left open at the last Save


def _check_answers() -> None:
    """Save's callback (before the rerun): which required questions are still open, so the
    form draws them highlighted."""
    values = {q["key"]: st.session_state.get(f"cfv_q_{view.assignment_id}_{q['key']}") for q in view.questions}
    st.session_state[MISSING_KEY] = tuple(q["key"] for q in reading.missing_answers(view.questions, values))


head_l, head_r, head_b = st.columns([3.2, 0.9, 0.55], vertical_alignment="center")
with head_l.container(key="cfv_prediction"):
    st.markdown(f"#### {reading.prediction_sentence(view.pathology, view.probability)}",
                help="The model's probability on the original radiograph (the film on the left).")
    components.progress_header(screen.progress, view.session, screen.sessions_total,
                               f"Case {view.position} of {view.total}")
head_r.markdown(f"<div style='text-align:right'><b>{html.escape(view.arm)}</b>"
                f"{'<br>reviewing a saved answer' if screen.answered else ''}</div>", unsafe_allow_html=True)
back = head_b.button("Back", icon=":material/arrow_back:", key="cfv_back", width="stretch",
                     help="The previous case of this session; your answers there can still be changed.")
notice = st.empty()  # Back's message, under the heading
if view.missing_artifacts:
    st.warning("Some prepared images of this case are missing. Answer from what is shown and say so in "
               "the comment, or tell the researcher.", icon=":material/broken_image:")

left, right = st.columns([1.0, 1.05], gap="medium")
try:
    with left:
        components.image_viewer(view, screen.media)
    with right.container(key="cfv_right"):
        components.explanation_tiles(view, screen.media)
except CfviewerError as exc:
    st.error(str(exc), icon=":material/broken_image:")

if not screen.answered:  # warm the caches for the next case while this one is read
    reading.prefetch_next(s.db, reader, view.assignment_id, st.session_state.get("cfv_opacity", 0.6))

with right.container(key="cfv_right_form"):
    submitted, answers, comment, slot = components.answer_form(
        view, highlight=st.session_state.get(MISSING_KEY, ()), on_submit=_check_answers)
    if submitted:
        out = reading.submit(s.db, reader, view, answers, comment)
        if out.saved:
            st.session_state.pop(MISSING_KEY, None)
            st.session_state[VIEW_KEY] = out.next_id
            st.toast("Answers saved" + (" (changed)" if out.edited else ""), icon=":material/check:")
            st.rerun()
        slot.error(out.message, icon=":material/priority_high:")  # beside Save, where the reader looks
if back:
    prev, msg = reading.go_back(s.db, reader, view.assignment_id)
    if prev is None:
        notice.warning(msg, icon=":material/info:")
    else:
        st.session_state[VIEW_KEY] = prev
        st.rerun()
