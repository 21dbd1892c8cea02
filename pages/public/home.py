"""Landing page for visitors without a role: readers are told to use their link, researchers
sign in; an unknown link or a missing study is said plainly (and no study data is shown)."""

import streamlit as st

from cfviewer.ui import shell

s = shell.state()
st.title("cfviewer reader study")
wanted = shell.requested_role()  # a researcher or reader page opened by its URL, without the role
if wanted == "researcher" and s.role != "invalid_token":
    st.info("This page is for the study's researchers. Sign in with the admin password below to open it.",
            icon=":material/lock:")
elif wanted == "reader" and s.role != "invalid_token":
    st.info("This page is for readers. Open the personal link you were sent (it ends in `?token=...`).",
            icon=":material/lock:")

if s.role == "invalid_token":
    st.error("This reader link is not valid. It may be mistyped, cut off, or from another study. "
             "Please open the exact link you were sent, or ask the study's researcher for a new one.",
             icon=":material/link_off:")
    st.stop()
if s.role == "no_study":  # no server paths for visitors who have not signed in (the log names them)
    st.warning(s.ctx.empty_state_message(show_path=False), icon=":material/folder_off:")
elif s.role == "db_error":
    detail = f": {s.error}" if shell.is_signed_in_researcher() else "; the server's log says why"
    st.error(f"The study database cannot be opened{detail}. Please tell the study's researcher.",
             icon=":material/error:")

st.markdown("**Readers:** open the personal link you received (it ends in `?token=...`). "
            "Your progress is saved after every case; the same link brings you back to where "
            "you stopped.")

st.subheader("Researcher sign-in")
problem = shell.password_problem()
if problem:
    st.info(problem, icon=":material/lock:")
else:
    with st.form("signin", enter_to_submit=True):
        pw = st.text_input("Admin password", type="password", key="cfv_password")
        if st.form_submit_button("Sign in", type="primary"):
            verdict = shell.sign_in(pw)
            if verdict:
                st.rerun()
            else:
                st.error(verdict.message, icon=":material/lock_clock:" if verdict.locked else None)
