"""The app's frame: who is asking (reader by token, researcher by password, or nobody) and
which pages they get. `app.py` calls `build_navigation()`; pages call `state()`.

Role rules:
- a valid ``?token=`` gives the reader pages only (worklist, case viewer); the token is kept
  in the URL so a reload or a bookmarked link resumes;
- an unknown token, or a link with more than one ``token`` parameter, gives one page that
  says so and shows no data;
- the researcher pages need the admin password (see `cfviewer.ui.auth`; sign-in is throttled
  per client and globally, `auth.THROTTLE`);
- a visitor without the role who opens a researcher or reader URL gets the public page with a
  sentence saying what the page needs (`guest_pages`), never Streamlit's "Page not found";
- with no study database yet, everyone sees how to build one (`cfviewer demo`).
"""

from __future__ import annotations

import logging
import os
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
        _log_once(ctx.empty_state_message())
        role = "researcher" if st.session_state.get(ADMIN_KEY) else ("invalid_token" if token else "no_study")
        s = AppState(ctx, role)
        return s
    from cfviewer.ui import resources

    try:
        db = resources.database(ctx.db_url)
    except CfviewerError as exc:
        _log_once(f"the study database cannot be opened: {exc}")
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


LOG = logging.getLogger("cfviewer.app")
_LOGGED: set[str] = set()


def _log_once(message: str) -> None:
    """A server-side note (with paths) for what visitors are told without paths."""
    if message not in _LOGGED:
        _LOGGED.add(message)
        LOG.warning("%s", message)


def is_signed_in_researcher() -> bool:
    return bool(st.session_state.get(ADMIN_KEY))


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


REQUESTED_KEY = "cfv_requested_page"  # the role-gated page a guest asked for (set every run)
GATED_PAGES = {"setup": "researcher", "precompute": "researcher", "sandbox": "researcher",
               "progress": "researcher", "analysis": "researcher", "export": "researcher",
               "worklist": "reader", "read": "reader"}
"""Every url_path of `researcher_pages()` and `reader_pages()`, and whose it is."""


def guest_pages() -> list[st.Page]:
    """The pages of a visitor without a role: the public home page, and the same page (hidden)
    at every researcher and reader URL, so a bookmarked /setup or /worklist shows the sign-in
    with a sentence saying what the page needs, never Streamlit's "Page not found" dialog.
    After signing in, the same URL opens the real page."""
    home = PUBLIC_PAGES / "home.py"
    pages = [_page(home, "cfviewer", ":material/home:", "home", default=True)]
    pages += [st.Page(str(home), title="cfviewer", url_path=url, visibility="hidden") for url in GATED_PAGES]
    return pages


def requested_role() -> str | None:
    """On the guest page: "researcher" or "reader" when the visitor opened a page of that role
    by its URL (without the role), else None."""
    return GATED_PAGES.get(st.session_state.get(REQUESTED_KEY) or "")


def build_navigation():
    """st.navigation for this visitor's role (call once per run from app.py)."""
    s = resolve_state()
    if s.role == "reader":
        return st.navigation(reader_pages(), position="top")
    if s.role == "researcher":
        return st.navigation(researcher_pages(), position="sidebar", expanded=True)
    page = st.navigation(guest_pages(), position="hidden")
    st.session_state[REQUESTED_KEY] = page.url_path
    return page


_FAVICON = None


def favicon():
    """The tab icon, drawn here (a chest film on the theme's blue): a ":material/..." page icon
    makes Streamlit's frontend fetch the SVG from fonts.gstatic.com, which fails in a reading
    room without internet; an image is served by this server."""
    global _FAVICON
    if _FAVICON is None:
        from PIL import Image, ImageDraw

        n = 64
        im = Image.new("RGBA", (n, n), (0, 0, 0, 0))
        d = ImageDraw.Draw(im)
        d.rounded_rectangle((2, 2, n - 3, n - 3), radius=12, fill=(31, 95, 168, 255))
        d.rectangle((14, 10, n - 15, n - 11), fill=(18, 24, 32, 255))  # the film
        d.ellipse((17, 16, 30, 48), fill=(200, 208, 216, 255))  # lungs
        d.ellipse((34, 16, 47, 48), fill=(200, 208, 216, 255))
        d.rectangle((30, 12, 33, 52), fill=(235, 238, 242, 255))  # spine
        _FAVICON = im
    return _FAVICON


ENV_CLIENT_IP_HEADER = "CFVIEWER_CLIENT_IP_HEADER"
"""Behind a reverse proxy every visitor arrives from the proxy's address: name the header the
proxy sets to the visitor's address (e.g. ``X-Real-IP``) so sign-in throttling is per visitor.
Only set it when a proxy overwrites that header on every request (else a client could choose
its own key); without it, a proxied server throttles all visitors as one client."""


def client_key() -> str:
    """Who is signing in, for the throttle: the header named by CFVIEWER_CLIENT_IP_HEADER (set
    by a trusted proxy), else the connection's IP address, else this browser session."""
    header = os.environ.get(ENV_CLIENT_IP_HEADER, "").strip()
    try:
        if header:
            value = st.context.headers.get(header)
            if isinstance(value, str) and value.strip():
                return "ip:" + value.split(",")[-1].strip()[:64]
        ip = st.context.ip_address
        if isinstance(ip, str) and ip:  # (a test harness may hand back a mock)
            return f"ip:{ip[:64]}"
    except Exception:  # no request context (AppTest, bare mode)
        pass
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return f"session:{ctx.session_id if ctx else 'none'}"


def sign_in(password: str) -> auth.Verdict:
    """Researcher sign-in: throttled (`auth.THROTTLE`, per client and global), then a
    constant-time check against the configured password. The verdict is truthy when signed in;
    otherwise its `message` says why (wrong password, or locked out and when to retry)."""
    expected = auth.configured_password(_secrets())
    verdict = auth.THROTTLE.attempt(client_key(), lambda: auth.check_password(password, expected))
    if verdict.ok:
        st.session_state[ADMIN_KEY] = True
    return verdict


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
