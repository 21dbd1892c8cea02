"""End to end in headless Chromium against `streamlit run app.py`: a reader opens the link,
answers three cases, reloads and finds the progress kept; the animation is a multi-frame GIF;
the database holds exactly the answers given.

Skips cleanly without Debian's chromium (/usr/bin/chromium, or CFVIEWER_CHROMIUM) or the
playwright package (browsers are never downloaded)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

import ui_fixtures as F
from browser import CHROMIUM, AppServer, launch_chromium, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# Generous per-step limit: the machine running the tests may be busy (a step normally takes < 1 s).
STEP_TIMEOUT_MS = 180_000


def _need_browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture()
def server_and_study(tmp_path_factory, tmp_path):
    _need_browser()
    fx = F.fresh_copy(F.template(tmp_path_factory), tmp_path / "db")
    server = AppServer(fx.env(), tmp_path / "streamlit.log")
    try:
        server.wait_ready()
        yield server, fx
    finally:
        server.stop()


def test_reader_answers_three_cases_reloads_and_the_database_matches(server_and_study):
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright
    from sqlalchemy import select

    from cfviewer.study.schema import DEFAULT_QUESTIONS, Question, Response

    server, fx = server_and_study
    token = fx.tokens["bob"]  # bob reads Method B (Latent Shift, animated) first
    given = [(4, 2), (2, 5), (5, 1)]
    anchors = {q["key"]: q["anchors"] for q in DEFAULT_QUESTIONS}
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(STEP_TIMEOUT_MS)
        expect.set_options(timeout=STEP_TIMEOUT_MS)
        page.goto(f"{server.url}?token={token}", wait_until="commit")
        expect(page.get_by_text("Welcome, bob")).to_be_visible()
        expect(page.get_by_text("0 of 12 cases done")).to_be_visible()
        page.get_by_role("button", name="Start reading").click()
        expect(page.get_by_text("The model predicts")).to_be_visible()
        wait_idle(page)

        # the animation: an <img> whose file is a GIF with more than one frame
        gif_img = page.locator('img[src$=".gif"]').first
        expect(gif_img).to_be_visible()
        src = gif_img.get_attribute("src")
        data = page.request.get(src if src.startswith("http") else server.url.rstrip("/") + src).body()
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "GIF" and im.n_frames > 1
        radiograph = page.locator('[data-testid="stImage"] img').first
        assert radiograph.bounding_box()["width"] >= 512  # the radiograph is shown large

        for i, (conf, feat) in enumerate(given):
            expect(page.get_by_text(f"Case {i + 1} of 12")).to_be_visible()
            wait_idle(page)
            page.get_by_text(anchors["confidence"][conf - 1], exact=True).click()
            page.get_by_text(anchors["correct_feature"][feat - 1], exact=True).click()
            page.get_by_role("button", name="Save and next").click()
            expect(page.get_by_text(f"Case {i + 2} of 12")).to_be_visible()

        page.reload()  # the same address: the case page, resumed from the database
        expect(page.get_by_text("Case 4 of 12")).to_be_visible()
        expect(page.get_by_text("3 of 12 cases done", exact=False)).to_be_visible()
        assert f"token={token}" in page.url
        wait_idle(page)
        page.get_by_role("link", name="My worklist").click()
        expect(page.get_by_text("Welcome, bob")).to_be_visible()
        expect(page.get_by_role("button", name="Continue with case 4 of 12")).to_be_visible()
        browser.close()
    print(f"browser session: {time.monotonic() - t0:.1f} s")

    db = fx.open()
    try:
        with db.read() as s:
            rows = s.execute(select(Response.assignment_id, Question.key, Response.value, Response.reader_id)
                             .join(Question, Question.id == Response.question_id)
                             .order_by(Response.id)).all()
    finally:
        db.dispose()
    assert {r.reader_id for r in rows} == {fx.reader_ids["bob"]}
    by_read: dict[int, dict[str, int]] = {}
    for aid, key, value, _ in rows:
        by_read.setdefault(aid, {})[key] = value
    assert [(v["confidence"], v["correct_feature"]) for _, v in sorted(by_read.items())] == given
    assert len(rows) == 6
