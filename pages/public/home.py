"""Landing page for visitors without a role: readers are told to use their link, researchers
sign in; an unknown link or a missing study is said plainly (and no study data is shown)."""

import streamlit as st

from cfviewer.ui import shell

s = shell.state()
st.title("cfviewer reader study")

if s.role == "invalid_token":
    st.error("This reader link is not valid. It may be mistyped, cut off, or from another study. "
             "Please open the exact link you were sent, or ask the study's researcher for a new one.",
             icon=":material/link_off:")
    st.stop()
if s.role == "no_study":
    st.warning(s.ctx.empty_state_message(), icon=":material/folder_off:")
elif s.role == "db_error":
    st.error(f"The study database cannot be opened: {s.error}", icon=":material/error:")

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
            if shell.sign_in(pw):
                st.rerun()
            else:
                st.error("Wrong password.")
