"""Screenshots of the reader page and the analysis page at 1280 x 800 in headless Chromium.

    python scripts/screenshots.py                       # the demo study if built, else a sample study
    python scripts/screenshots.py --study-dir DIR --out docs

Works on a copy of the study database (a screenshot reader is added to the copy, and simulated
readers when the copy has no answers), so the study itself is never changed. Drives the app
with the tests' browser helpers (tests/browser.py: `streamlit run app.py` + Debian's chromium).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _prepare(study_dir: Path | None, tmp: Path, image_size: int) -> tuple[Path, str, str, str]:
    """(study root, copied db url, study name, token of a reader whose first case shows the
    counterfactual animation when the study has one)."""
    from sqlalchemy import select

    from cfviewer import paths
    from cfviewer.study import design, studies
    from cfviewer.study import responses as R
    from cfviewer.study.db import open_database, resolve_url
    from cfviewer.study.schema import Artifact, Assignment, Response
    from cfviewer.study.db import copy_sqlite
    from cfviewer.study.demo import build_sample_study

    if study_dir is None and (paths.demo_dir() / "study.db").is_file():
        study_dir = paths.demo_dir()
    if study_dir is None:
        sample = build_sample_study(tmp, image_size=image_size)
        root, src = sample.root, sample.db_url
    else:
        root, src = Path(study_dir).resolve(), resolve_url(None, study_dir)
    url = copy_sqlite(src, tmp / "copy" / "study.db")
    db = open_database(url, study_dir=root)  # the copy's files stay in the study folder
    try:
        with db.write() as s:
            st = studies.get_study(s, None)
            name = st.name
            # simulated: their two answers must not count as a real reader's in the analysis
            new = studies.add_readers(s, st, ["screenshot-1", "screenshot-2"], simulated=True)
            design.build_schedule(s, st)
        token, reader = new[0].token, new[0].reader
        with db.read() as s:
            gif_arms = set(s.scalars(select(Artifact.arm_id).where(Artifact.kind == "gif")))
            for n in new:
                first = s.scalars(select(Assignment).where(Assignment.reader_id == n.reader.id)
                                  .order_by(Assignment.position)).first()
                if first is not None and first.arm_id in gif_arms:
                    token, reader = n.token, n.reader
                    break
        for k in range(2):  # some progress on screen
            with db.read() as s:
                nxt = R.next_assignment(s, reader)
            if nxt.status == "ready":
                R.record_response(db, reader.id, nxt.assignment.id, {"confidence": 4, "correct_feature": 3 + k})
        with db.read() as s:
            has_other = s.scalars(select(Response.id).where(
                Response.reader_id.not_in([n.reader.id for n in new])).limit(1)).first()
        if not has_other:
            from cfviewer.study.simulate import simulate_readers

            simulate_readers(db, name, n_readers=2, seed=7)
    finally:
        db.dispose()
    return root, url, name, token


def _images_loaded(page) -> None:
    page.wait_for_function(
        "() => { const imgs = Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'));"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }")
    page.wait_for_timeout(500)


def take(out: Path, study_dir: Path | None = None, image_size: int = 512) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from browser import AppServer, launch_chromium, wait_idle

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cfviewer-shots-"))
    password = secrets.token_urlsafe(16)
    shots = []
    try:
        root, url, name, token = _prepare(study_dir, tmp, image_size)
        env = {"CFVIEWER_STUDY_DIR": str(root), "CFVIEWER_DB_URL": url, "CFVIEWER_ADMIN_PASSWORD": password}
        with AppServer(env, tmp / "streamlit.log") as server, sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(180_000)
            expect.set_options(timeout=180_000)

            page.goto(f"{server.url}?token={token}", wait_until="commit")
            button = page.get_by_role("button", name="Continue with case", exact=False)
            expect(button).to_be_visible()
            button.click()
            expect(page.get_by_text("The model predicts")).to_be_visible()
            expect(page.get_by_role("button", name="Save and next")).to_be_visible()  # the whole page drawn
            wait_idle(page)
            _images_loaded(page)
            shots.append(out / "screenshot_reader.png")
            page.screenshot(path=str(shots[-1]))

            admin = browser.new_page(viewport={"width": 1280, "height": 800})
            admin.set_default_timeout(180_000)
            admin.goto(server.url, wait_until="commit")
            admin.get_by_label("Admin password").fill(password)
            admin.get_by_role("button", name="Sign in").click()
            expect(admin.get_by_text("Study setup").first).to_be_visible()
            wait_idle(admin)
            admin.get_by_role("link", name="Analysis").click()
            wait_idle(admin)
            toggle = admin.get_by_text("Include simulated readers")
            toggle.wait_for()
            toggle.click()  # the copy's answers come from simulated readers
            wait_idle(admin)
            try:
                admin.get_by_role("tab", name="Figures").click()
            except Exception:
                admin.screenshot(path=str(out / "screenshot_analysis_failed.png"))
                raise
            admin.locator(".js-plotly-plot").first.wait_for()
            wait_idle(admin)
            admin.wait_for_timeout(2000)  # plotly draws after the element appears
            shots.append(out / "screenshot_analysis.png")
            admin.screenshot(path=str(shots[-1]))
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return shots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/screenshots.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study-dir", type=Path, help="study folder (default: the demo if built, else a sample)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--image-size", type=int, default=512, help="sample study phantom size (px)")
    args = ap.parse_args(argv)
    for path in take(args.out, args.study_dir, args.image_size):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
