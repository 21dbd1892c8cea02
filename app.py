"""cfviewer web app: `streamlit run app.py` (see README). Pages by role: readers open their
personal link (?token=...), researchers sign in with the admin password. Logic lives in
cfviewer.ui; the page scripts live in pages/reader/, pages/researcher/ and pages/public/ (never
in pages/ itself, which Streamlit would serve by URL without this gate) and only draw."""

import streamlit as st

from cfviewer.ui.serve import configure_logging, hide_server_paths
from cfviewer.ui.shell import build_navigation, favicon

configure_logging()  # failed sign-ins etc. in the server's output (cfviewer.auth)
hide_server_paths()  # browsers get "app.py", not its path on the server (cfviewer.ui.serve)
# The tab icon is an image served by this server: a ":material/..." page icon would make the
# browser fetch it from fonts.gstatic.com (a reading room may have no internet).
st.set_page_config(page_title="cfviewer reader study", page_icon=favicon(),
                   layout="wide", initial_sidebar_state="auto")
# Less empty space above the content: at 1280 x 800 the radiograph must fit on screen.
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:4.6rem;padding-bottom:1rem}</style>")
build_navigation().run()
