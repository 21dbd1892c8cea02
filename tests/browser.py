"""Drive the real app in headless Chromium: start `streamlit run app.py` on a free localhost
port, launch Debian's chromium through Playwright (never a downloaded browser), wait for
Streamlit to finish a run. Test support (tests/test_browser_e2e.py, tests/test_pages_gate.py),
also used by `python scripts/screenshots.py`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CFVIEWER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`streamlit run app.py` on a free localhost port with extra environment variables.

    `app` runs another entry script (from its own folder); `launcher` replaces
    `python -m streamlit run` by `python LAUNCHER` (which must hand its arguments to
    `streamlit run`), e.g. to watch which scripts the server executes."""

    def __init__(self, env: dict[str, str], log: Path, app: Path | None = None,
                 launcher: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = Path(log)
        app = Path(app) if app is not None else ROOT / "app.py"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        start = [sys.executable, str(launcher)] if launcher else [sys.executable, "-m", "streamlit", "run"]
        self._fh = open(self.log, "w")
        self.proc = subprocess.Popen(
            [*start, str(app), "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
             "--server.runOnSave", "false"],
            cwd=app.parent, env=full_env, stdout=self._fh, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"streamlit did not answer within {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._fh.close()

    def __enter__(self) -> "AppServer":
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def wait_idle(page, timeout: float = 90_000) -> None:
    """Until Streamlit has finished the current run (no 'running' widget, no stale elements)."""
    page.wait_for_timeout(150)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-stale="true"]')""", timeout=timeout)


SCROLL_TOPS_JS = """() => Array.from(document.querySelectorAll('*'))
    .filter(el => el.scrollHeight > el.clientHeight + 1 && ['auto', 'scroll'].includes(getComputedStyle(el).overflowY))
    .map(el => el.scrollTop).concat([document.scrollingElement ? document.scrollingElement.scrollTop : 0])"""


def scroll_tops(page) -> list[float]:
    """scrollTop of every scrollable element of the page (Streamlit scrolls its main section,
    not the document); all 0 = the page is at its top."""
    return page.evaluate(SCROLL_TOPS_JS)


def in_viewport(page, locator) -> bool:
    """The element lies wholly inside the browser window (no scrolling needed to see it)."""
    box = locator.bounding_box()
    vp = page.viewport_size
    return (box is not None and box["y"] >= 0 and box["x"] >= 0
            and box["y"] + box["height"] <= vp["height"] + 0.5 and box["x"] + box["width"] <= vp["width"] + 0.5)


def fetch_image(page, base_url: str, img) -> bytes:
    """The bytes the server sends for an <img> (its src, relative to the app's address)."""
    src = img.get_attribute("src")
    return page.request.get(src if src.startswith("http") else base_url.rstrip("/") + src).body()
