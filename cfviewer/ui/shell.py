"""The app's frame: who is asking (reader by token, researcher by password, or nobody) and
which pages they get. `app.py` calls `build_navigation()`; pages call `state()`.

Role rules:
- a valid ``?token=`` gives the reader pages only (worklist, case viewer); the token is kept
  in the URL so a reload or a bookmarked link resumes;
- an unknown token, or a link with more than one ``token`` parameter, gives one page that
  says so and shows no data;
- the researcher pages need the admin password (see `cfviewer.ui.auth`);
- with no study database yet, everyone sees how to build one (`cfviewer demo`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from cfviewer import paths
from cfviewer.errors import CfviewerError
from cfviewer.ui import auth
from cfviewer.ui.context import AppContext, app_context

ROOT = paths.app_root()  # app.py and pages/, in a checkout or an installed wheel
# The page scripts live in sub-folders of `pages/` (reader/, researcher/, public/), never in
# `pages/` itself: Streamlit (1.44-1.67) serves every `pages/*.py` by URL as a v1 multipage app
# until a session has run st.navigation, i.e. without app.py and its role gate below. It scans
# `pages/*.py` only (no sub-folders), so a direct URL can only ever reach app.py.
PAGES = ROOT / "pages"
READER_PAGES = PAGES / "reader"
RESEARCHER_PAGES = PAGES / "researcher"
PUBLIC_PAGES = PAGES / "public"
ADMIN_KEY = "cfv_admin"
TOKEN_KEY = "cfv_token"


@dataclass
class AppState:
    ctx: AppContext
    role: str  # "reader", "researcher", "invalid_token", "guest", "no_study", "db_error"
    db: Any = None
    reader: Any = None  # cfviewer.study.schema.Reader (detached, read-only use)
    error: str | None = None


def state() -> AppState:
    """Who is asking, computed afresh for this run (pages call this; never trust a value
    left in the session by an earlier run)."""
    return resolve_state()


def require_reader() -> AppState:
    """The state of a reader page; anyone else gets a plain refusal and no data."""
    s = state()
    if s.role != "reader" or s.reader is None:
        st.error("This page is for readers: open the personal link you were sent.")
        st.stop()
    return s


def resolve_state() -> AppState:
    ctx = app_context()
    try:
        url_token = auth.token_from_query(st.query_params)
    except auth.AmbiguousTokenError:
        # Two or more ?token= parameters: exactly one is accepted. Nobody is signed in as a
        # reader by such a link (not even from this session's earlier token); the visitor gets
        # the invalid-link page and no data.
        st.session_state.pop(TOKEN_KEY, None)
        return AppState(ctx, "invalid_token")
    token = url_token or st.session_state.get(TOKEN_KEY)
    if not ctx.database_exists():
        role = "researcher" if st.session_state.get(ADMIN_KEY) else ("invalid_token" if token else "no_study")
        s = AppState(ctx, role)
        return s
    from cfviewer.ui import resources

    try:
        db = resources.database(ctx.db_url)
    except CfviewerError as exc:
        s = AppState(ctx, "db_error", error=str(exc))
        return s
    s = AppState(ctx, "guest", db=db)
    if token:
        reader = auth.reader_for_token(db, token)
        if reader is None:
            st.session_state.pop(TOKEN_KEY, None)
            s.role = "invalid_token"
        else:
            st.session_state[TOKEN_KEY] = token
            if url_token != token:
                st.query_params["token"] = token  # keep the link in the address bar for reloads
            s.role, s.reader = "reader", reader
    elif st.session_state.get(ADMIN_KEY):
        s.role = "researcher"
    return s


def _page(path: Path, title: str, icon: str, url: str, default: bool = False) -> st.Page:
    return st.Page(str(path), title=title, icon=icon, url_path=url, default=default)


def reader_pages() -> list[st.Page]:
    return [
        _page(READER_PAGES / "reader_worklist.py", "My worklist", ":material/checklist:", "worklist", default=True),
        _page(READER_PAGES / "reader_case.py", "Read cases", ":material/radiology:", "read"),
    ]


def researcher_pages() -> dict[str, list[st.Page]]:
    return {
        "Study": [
            _page(RESEARCHER_PAGES / "admin_setup.py", "Study setup", ":material/settings:", "setup", default=True),
            _page(RESEARCHER_PAGES / "admin_precompute.py", "Precompute", ":material/memory:", "precompute"),
            _page(RESEARCHER_PAGES / "admin_sandbox.py", "Explainer sandbox", ":material/science:", "sandbox"),
        ],
        "Results": [
            _page(RESEARCHER_PAGES / "admin_progress.py", "Reader progress", ":material/group:", "progress"),
            _page(RESEARCHER_PAGES / "admin_analysis.py", "Analysis", ":material/analytics:", "analysis"),
            _page(RESEARCHER_PAGES / "admin_export.py", "Export", ":material/download:", "export"),
        ],
    }


def build_navigation():
    """st.navigation for this visitor's role (call once per run from app.py)."""
    s = resolve_state()
    if s.role == "reader":
        return st.navigation(reader_pages(), position="top")
    if s.role == "researcher":
        return st.navigation(researcher_pages(), position="sidebar", expanded=True)
    return st.navigation([_page(PUBLIC_PAGES / "home.py", "cfviewer", ":material/home:", "home", default=True)],
                         position="hidden")


def sign_in(password: str) -> bool:
    """Researcher sign-in (constant-time check against the configured password)."""
    expected = auth.configured_password(_secrets())
    if auth.check_password(password, expected):
        st.session_state[ADMIN_KEY] = True
        return True
    return False


def sign_out() -> None:
    for key in (ADMIN_KEY, TOKEN_KEY):
        st.session_state.pop(key, None)


def _secrets():
    try:
        return dict(st.secrets)
    except Exception:  # no secrets.toml
        return None


def password_problem() -> str | None:
    return auth.password_problem(auth.configured_password(_secrets()))


STUDY_KEY = "cfv_study"


def researcher_sidebar():
    """Study picker + sign-out in the sidebar; returns (state, study name or None).
    With no database yet, says so (the Setup page can create the study)."""
    from cfviewer.ui import research

    s = state()
    if s.role != "researcher":  # a page opened without the role (defence in depth)
        st.error("Researcher pages need the admin password.")
        st.stop()
    name = None
    with st.sidebar:
        if s.db is not None:
            names = research.study_names(s.db)
            chosen = research.pick_study(names, st.session_state.get(STUDY_KEY) or s.ctx.study_name)
            if len(names) > 1:
                chosen = st.selectbox("Study", names, index=names.index(chosen), key="cfv_study_pick")
            st.session_state[STUDY_KEY] = chosen
            name = chosen
            if name:
                st.caption(f"Study **{name}** · database `{s.ctx.sqlite_path or s.ctx.db_url}`")
        if st.button("Sign out", icon=":material/logout:", key="cfv_signout"):
            sign_out()
            st.rerun()
    return s, name


def require_study(s: AppState, name: str | None) -> None:
    """Stop the page with a clear empty state when there is no study yet."""
    if s.db is None or not name:
        msg = s.ctx.empty_state_message() if s.db is None else "This database holds no study yet."
        st.info(f"{msg} You can also create one on the **Study setup** page.", icon=":material/folder_off:")
        st.stop()
