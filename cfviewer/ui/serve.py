"""Serve the web app without telling browsers where it lives on the server.

Streamlit (1.67) sends every browser the absolute path of the entry script
(``NewSession.main_script_path``, e.g. ``/home/lab/cfviewer/app.py``), which its frontend uses
only as input to an anonymous app hash; and it answers a ``load_git_info`` message from any
browser with the repository's remote, branch and the names of untracked and modified files.
`hide_server_paths()` sends the script's file name instead of its path and ignores
``load_git_info``. Other server-side paths are kept from browsers by the app itself
(``client.showErrorDetails = "none"`` in .streamlit/config.toml; no database path for
visitors who have not signed in).

It also turns off Streamlit's scan of ``pages/*.py`` (`no_pages_folder_scan`): until some
session has run ``st.navigation``, Streamlit treats the ``pages/`` folder beside app.py as a
v1 multipage app, so the first visit after a start to a bookmarked URL such as ``/setup``
got Streamlit's "Page not found" dialog before app.py's role gate ran (the page scripts live
in sub-folders, so that scan finds nothing to serve; see tests/test_pages_gate.py).

`python -m cfviewer.ui.serve run app.py [streamlit options]` (what scripts/run-app does)
patches before the server starts, so even the first browser gets no path; app.py also calls
`hide_server_paths()`, so a plain `streamlit run app.py` is covered from its first run on
(only the very first session's first message, sent before app.py ran, still has the path).
Both are best effort: if a Streamlit release renames these internals, nothing is patched and
the app runs as before (`hide_server_paths()` returns False and logs why).
"""

from __future__ import annotations

import functools
import logging
import os
import sys

LOG = logging.getLogger("cfviewer.app")
_PATCHED = "_cfviewer_hides_paths"


def hide_server_paths() -> bool:
    """Patch Streamlit's session messages (idempotent); True when patched."""
    try:
        from streamlit.runtime.app_session import AppSession
    except Exception as exc:  # pragma: no cover - Streamlit layout changed
        LOG.warning("cannot hide the app's server path from browsers: %s", exc)
        return False
    if getattr(AppSession, _PATCHED, False):
        return True
    original = getattr(AppSession, "_create_new_session_message", None)
    if original is None or not hasattr(AppSession, "_handle_git_information_request"):
        LOG.warning("cannot hide the app's server path from browsers: this Streamlit has no "
                    "AppSession._create_new_session_message / _handle_git_information_request")
        return False

    @functools.wraps(original)
    def new_session_message(self, *args, **kwargs):
        msg = original(self, *args, **kwargs)
        try:
            path = msg.new_session.main_script_path
            if path:
                msg.new_session.main_script_path = os.path.basename(path)
        except Exception:  # pragma: no cover - message layout changed
            pass
        return msg

    def no_git_info(self, *args, **kwargs) -> None:
        return None  # repository, branch and file names are nobody's business in a reading room

    AppSession._create_new_session_message = new_session_message
    AppSession._handle_git_information_request = no_git_info
    setattr(AppSession, _PATCHED, True)
    return True


def configure_logging() -> None:
    """Send the app's log lines (``cfviewer.*``: failed sign-ins, database problems) to the
    server's stderr with a time stamp, unless logging is configured already (idempotent)."""
    log = logging.getLogger("cfviewer")
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def no_pages_folder_scan() -> bool:
    """Never run app.py as a v1 multipage app (Streamlit's ``pages/`` scan); True when set.
    Must run before the first session starts (Streamlit decides once per process)."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except Exception as exc:  # pragma: no cover - Streamlit layout changed
        LOG.warning("cannot turn off Streamlit's pages/ scan: %s", exc)
        return False
    if not hasattr(PagesManager, "uses_pages_directory"):
        LOG.warning("cannot turn off Streamlit's pages/ scan: no PagesManager.uses_pages_directory")
        return False
    PagesManager.uses_pages_directory = False
    return True


def main(argv: list[str] | None = None) -> int:
    """`streamlit ...` (e.g. `run app.py --server.port 8501`) with `hide_server_paths()` and
    `no_pages_folder_scan()` first."""
    hide_server_paths()
    no_pages_folder_scan()
    configure_logging()
    from streamlit.web import cli

    sys.argv = ["streamlit", *(sys.argv[1:] if argv is None else argv)]
    return cli.main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
