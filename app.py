"""cfviewer web app: `streamlit run app.py` (see README). Pages by role: readers open their
personal link (?token=...), researchers sign in with the admin password. Logic lives in
cfviewer.ui; pages only draw."""

import streamlit as st

from cfviewer.ui.shell import build_navigation

st.set_page_config(page_title="cfviewer reader study", page_icon=":material/radiology:",
                   layout="wide", initial_sidebar_state="auto")
build_navigation().run()
