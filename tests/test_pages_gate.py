"""The page scripts in `pages/` cannot go around app.py's role gate.

Streamlit (1.44-1.67) treats a `pages/` folder beside the entry script as a v1 multipage app:
until a session has run `st.navigation`, every `pages/*.py` is served by URL *without*
app.py. It scans `pages/*.py` only, so the scripts live in `pages/reader/`,
`pages/researcher/` and `pages/public/`, and each keeps its own role check.

Proved with a real server: `streamlit run app.py` on a free localhost port (headless, killed
at the end) whose process records every script it executes (a Python audit hook on `exec`,
set by a small launcher before Streamlit's own CLI starts). Right after the start, a visitor
who has not signed in asks for each researcher page by URL (its `st.navigation` URL, its file
name as Streamlit's v1 scan would name it, and its page hashes) over Streamlit's websocket,
as the browser does: only app.py and the public home page run, never a researcher page. A
control app with a flat `pages/admin_setup.py` shows that the same harness does catch a page
served around the gate (as long as no session has run app.py, every visit to its URL runs it).
"""

from __future__ import annotations

import ast
import os
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import ui_fixtures as F
from browser import AppServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"
RESEARCHER = {  # file -> its st.navigation url_path (cfviewer.ui.shell.researcher_pages)
    "admin_setup.py": "setup", "admin_precompute.py": "precompute", "admin_sandbox.py": "sandbox",
    "admin_progress.py": "progress", "admin_analysis.py": "analysis", "admin_export.py": "export",
}
READER = {"reader_worklist.py": "worklist", "reader_case.py": "read"}

LAUNCHER = textwrap.dedent(r"""
    # streamlit run APP, recording each run of APP and of any script under pages/ beside it
    import os, sys

    LOG, WATCH = os.environ["CFV_RUN_LOG"], os.path.realpath(os.environ["CFV_WATCH_ROOT"])
    APP = os.path.basename(sys.argv[1])

    def hook(event, args):  # Streamlit runs every script with exec(code, module.__dict__)
        if event == "exec" and args:
            name = getattr(args[0], "co_filename", "")
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.realpath(name), WATCH)
                if rel == APP or rel.startswith("pages" + os.sep):
                    with open(LOG, "a") as f:
                        f.write(rel + "\n")

    sys.addaudithook(hook)
    if os.environ.get("CFV_RUN_APP_LAUNCHER"):  # start as scripts/run-app does (cfviewer.ui.serve)
        from cfviewer.ui import serve

        serve.hide_server_paths()
        serve.no_pages_folder_scan()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", *sys.argv[1:]]
    sys.exit(cli.main())
""")


class Server(AppServer):
    """`streamlit run <app>` on a free port through the recording launcher; `ran()` lists
    the scripts it executed."""

    def __init__(self, app: Path, tmp: Path, env: dict[str, str], run_app: bool = False):
        port_log = tmp / f"ran-{uuid.uuid4().hex[:8]}.txt"
        launcher = tmp / "launch_streamlit.py"
        launcher.write_text(LAUNCHER)
        extra = {"CFV_RUN_APP_LAUNCHER": "1"} if run_app else {}
        super().__init__({**env, **extra, "CFV_RUN_LOG": str(port_log), "CFV_WATCH_ROOT": str(app.parent)},
                         tmp / f"streamlit-{port_log.stem}.log", app=app, launcher=launcher)
        self.ran_log = port_log
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def visit(self, page_name: str = "", query: str = "", page_script_hash: str = "",
              timeout: float = 90.0) -> str:
        """One browser visit: open the websocket, ask for the page as the frontend does for
        http://host/<page_name>?<query>, read until the run finished; the text it showed."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from websockets.sync.client import connect

        parts: list[str] = []
        with connect(f"ws://127.0.0.1:{self.port}/_stcore/stream", subprotocols=["streamlit"],
                     open_timeout=30, max_size=None) as ws:
            back = BackMsg()
            back.rerun_script.query_string = query
            back.rerun_script.page_name = page_name
            back.rerun_script.page_script_hash = page_script_hash
            ws.send(back.SerializeToString())
            deadline = time.monotonic() + timeout
            while True:
                msg = ForwardMsg()
                msg.ParseFromString(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
                kind = msg.WhichOneof("type")
                if kind == "delta":
                    parts.append(str(msg.delta))
                elif kind == "page_not_found":
                    parts.append(f"PAGE NOT FOUND {msg.page_not_found.page_name}")
                elif kind == "script_finished":
                    break
        return "\n".join(parts)

    def messages(self, page_name: str = "", query: str = "", extra: list | None = None,
                 timeout: float = 90.0) -> list:
        """Every ForwardMsg of one visit (until the run finished), after sending `extra`
        BackMsgs (e.g. load_git_info) once the run started."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from websockets.sync.client import connect

        out = []
        with connect(f"ws://127.0.0.1:{self.port}/_stcore/stream", subprotocols=["streamlit"],
                     open_timeout=30, max_size=None) as ws:
            back = BackMsg()
            back.rerun_script.query_string = query
            back.rerun_script.page_name = page_name
            ws.send(back.SerializeToString())
            for m in extra or []:
                ws.send(m.SerializeToString())
            deadline = time.monotonic() + timeout
            while True:
                msg = ForwardMsg()
                msg.ParseFromString(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
                out.append(msg)
                if msg.WhichOneof("type") == "script_finished":
                    break
            try:  # anything that still comes (an answer to `extra`)
                while True:
                    msg = ForwardMsg()
                    msg.ParseFromString(ws.recv(timeout=2.0))
                    out.append(msg)
            except TimeoutError:
                pass
        return out

    def ran(self) -> list[str]:
        return self.ran_log.read_text().split() if self.ran_log.exists() else []


def _need_client():
    pytest.importorskip("websockets.sync.client", reason="the websockets package is not installed")


def _page_scripts(ran: list[str]) -> list[str]:
    return [p for p in ran if p.startswith("pages" + os.sep)]


# ---------------------------------------------------------------------- layout
def test_pages_folder_holds_no_script_streamlit_would_serve_by_url():
    assert PAGES.is_dir()
    assert sorted(p.name for p in PAGES.glob("*.py")) == []  # what Streamlit's v1 scan serves
    assert sorted(p.name for p in (PAGES / "researcher").glob("*.py")) == sorted(RESEARCHER)
    assert sorted(p.name for p in (PAGES / "reader").glob("*.py")) == sorted(READER)
    assert [p.name for p in (PAGES / "public").glob("*.py")] == ["home.py"]
    assert not (ROOT / "app_pages").exists()


def _first_call(path: Path) -> str:
    """The first statement of a page script that calls something (imports skipped)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        return ast.unparse(node)
    return ""


@pytest.mark.parametrize("name", sorted(RESEARCHER))
def test_each_researcher_page_checks_the_role_first(name):
    assert _first_call(PAGES / "researcher" / name).endswith("shell.researcher_sidebar()")


@pytest.mark.parametrize("name", sorted(READER))
def test_each_reader_page_checks_the_role_first(name):
    assert _first_call(PAGES / "reader" / name) == "s = shell.require_reader()"


@pytest.fixture()
def fx(tmp_path_factory, tmp_path):
    return F.fresh_copy(F.template(tmp_path_factory), tmp_path / "db")


@pytest.mark.parametrize("name", sorted(RESEARCHER))
def test_a_researcher_page_run_on_its_own_refuses_a_guest_and_a_reader(fx, monkeypatch, name):
    # Defence in depth: even run directly (without app.py), a page shows nothing to a visitor
    # without the researcher role.
    from streamlit.testing.v1 import AppTest

    for k, v in fx.env().items():
        monkeypatch.setenv(k, v)
    for token in (None, fx.tokens["alice"]):
        at = AppTest.from_file(str(PAGES / "researcher" / name), default_timeout=60)
        if token:
            at.query_params["token"] = token
        at.run()
        assert not at.exception, at.exception
        assert [e.value for e in at.error] == ["Researcher pages need the admin password."]
        assert len(at.main) <= 1 and len(at.sidebar) == 0


# ---------------------------------------------------------------------- a real server
def test_direct_urls_to_researcher_pages_right_after_start_run_no_page_script(fx, tmp_path):
    _need_client()
    from streamlit.util import calc_hash

    for name, url in RESEARCHER.items():
        stem = name[:-3]  # the URL Streamlit's v1 scan would give pages/<name>
        names = [url, stem, f"researcher/{stem}", f"pages/researcher/{stem}"]
        hashes = [calc_hash(url), calc_hash(str(PAGES / "researcher" / name))]
        for first in (url, stem):  # a fresh server each: its first visit is served before
            server = Server(ROOT / "app.py", tmp_path, fx.env())  # any session ran st.navigation
            try:
                shown = [server.visit(first)] + [server.visit(n) for n in names if n != first]
                shown += [server.visit(page_script_hash=h) for h in hashes]
                ran = server.ran()
            finally:
                server.stop()
            assert _page_scripts(ran) == [os.path.join("pages", "public", "home.py")] * len(shown), (name, ran)
            assert ran.count("app.py") == len(shown)  # every visit went through the gate
            for text in shown:
                assert "Researcher sign-in" in text  # the guest's home page, nothing else
                assert "Study setup" not in text and "Sign out" not in text

    # the same server does serve the pages a role opens: a reader's link runs the worklist
    server = Server(ROOT / "app.py", tmp_path, fx.env())
    try:
        text = server.visit("", query=f"token={fx.tokens['alice']}")
        text_guest = server.visit("setup", query=f"token={fx.tokens['alice']}")
        ran = server.ran()
    finally:
        server.stop()
    assert "Welcome, alice" in text and "Welcome, alice" in text_guest
    assert _page_scripts(ran) == [os.path.join("pages", "reader", "reader_worklist.py")] * 2, ran


def test_the_harness_catches_a_flat_pages_script_served_around_the_gate(tmp_path):
    # The hole this layout avoids: a gate in app.py (st.navigation with one public page) and a
    # flat pages/admin_setup.py. Right after start, its URL runs the page without app.py.
    _need_client()
    app_dir = tmp_path / "flat_app"
    (app_dir / "pages").mkdir(parents=True)
    (app_dir / "public").mkdir()
    (app_dir / "app.py").write_text(
        "import streamlit as st\n"
        "st.navigation([st.Page('public/home.py', url_path='home', default=True)], position='hidden').run()\n")
    (app_dir / "public" / "home.py").write_text("import streamlit as st\nst.write('public home')\n")
    (app_dir / "pages" / "admin_setup.py").write_text("import streamlit as st\nst.write('SECRET researcher page')\n")
    server = Server(app_dir / "app.py", tmp_path, {})
    try:
        first = server.visit("admin_setup")  # no session has run st.navigation yet
        again = server.visit("admin_setup")  # still none: app.py has not run at all
        ran_before = server.ran()
        server.visit("")  # the main page runs app.py, whose st.navigation ends the v1 mode
        later = server.visit("admin_setup")
        ran = server.ran()
    finally:
        server.stop()
    page = os.path.join("pages", "admin_setup.py")
    assert "SECRET researcher page" in first and "SECRET researcher page" in again
    assert ran_before == [page, page]  # served twice, app.py never ran
    assert "SECRET researcher page" not in later and "public home" in later
    assert ran.count(page) == 2 and "app.py" in ran


def test_a_role_page_url_without_the_role_shows_the_sign_in_with_a_sentence(fx, tmp_path):
    # A bookmarked researcher URL opened without signing in: the guest's home page with a
    # plain sentence and the sign-in form, never Streamlit's "Page not found" dialog, even
    # as the first visit after the server started (as scripts/run-app starts it).
    _need_client()
    server = Server(ROOT / "app.py", tmp_path, fx.env(), run_app=True)
    try:
        shown = {url: server.visit(url) for url in [*RESEARCHER.values(), *READER.values()]}
        plain = server.visit("")
        ran = server.ran()
    finally:
        server.stop()
    for url, text in shown.items():
        assert "PAGE NOT FOUND" not in text, url
        assert "Researcher sign-in" in text and "Study setup" not in text and "Sign out" not in text
        if url in RESEARCHER.values():
            assert "researchers. Sign in with the admin password below to open it." in text, url
        else:
            assert "This page is for readers. Open the personal link you were sent" in text, url
    assert "This page is for" not in plain and "PAGE NOT FOUND" not in plain
    assert _page_scripts(ran) == [os.path.join("pages", "public", "home.py")] * (len(shown) + 1)


def test_browsers_get_no_server_path_no_git_info_and_no_internet_favicon(fx, tmp_path):
    # Streamlit sends the entry script's path in every NewSession and answers load_git_info
    # with the repository's remote, branch and file names; the app's favicon is an image it
    # serves itself (a ":material/..." icon is fetched from fonts.gstatic.com by the browser).
    _need_client()
    from streamlit.proto.BackMsg_pb2 import BackMsg

    git = BackMsg()
    git.load_git_info = True
    server = Server(ROOT / "app.py", tmp_path, fx.env(), run_app=True)
    try:
        msgs = server.messages("", extra=[git])
        msgs += server.messages("setup", query=f"token={fx.tokens['alice']}")
    finally:
        server.stop()
    kinds = [m.WhichOneof("type") for m in msgs]
    sessions = [m.new_session for m in msgs if m.WhichOneof("type") == "new_session"]
    assert sessions and all(s.main_script_path == "app.py" for s in sessions)
    assert "git_info_changed" not in kinds
    wire = b"".join(m.SerializeToString() for m in msgs)
    for secret in (str(ROOT).encode(), str(fx.root).encode(), str(tmp_path).encode()):
        assert secret not in wire
    icons = [m.page_config_changed.favicon for m in msgs if m.WhichOneof("type") == "page_config_changed"]
    assert icons and all(i.startswith("/media/") for i in icons), icons
    assert b"gstatic" not in wire and b"googleapis" not in wire


@pytest.mark.browser
def test_the_browser_requests_nothing_from_the_internet(fx, tmp_path):
    # A reading room may have no internet: every request the frontend makes (fonts, icons,
    # favicon, scripts) goes to this server. Headless Chromium on the guest home page, a
    # researcher URL (the sign-in, no "Page not found" dialog) and a reader's worklist.
    pw = pytest.importorskip("playwright.sync_api")
    from browser import launch_chromium, wait_idle

    if not Path(os.environ.get("CFVIEWER_CHROMIUM", "/usr/bin/chromium")).exists():
        pytest.skip("no chromium")
    server = Server(ROOT / "app.py", tmp_path, fx.env(), run_app=True)
    outside: list[str] = []
    try:
        with pw.sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.on("request", lambda r: None if r.url.startswith((server.url, "data:", "blob:"))
                        else outside.append(r.url))
                page.goto(server.url + "setup")
                page.get_by_text("Sign in with the admin password below").wait_for(timeout=90_000)
                wait_idle(page)
                assert page.get_by_text("Page not found").count() == 0
                page.goto(server.url)
                wait_idle(page)
                page.goto(f"{server.url}?token={fx.tokens['alice']}")
                page.get_by_text("Welcome, alice").first.wait_for(timeout=90_000)
                wait_idle(page)
                page.wait_for_timeout(1000)
            finally:
                browser.close()
    finally:
        server.stop()
    assert outside == []
