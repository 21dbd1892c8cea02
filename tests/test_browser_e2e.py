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
        # measured once the film has loaded (before, its box can still be a placeholder's)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=radiograph.element_handle())
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


@pytest.mark.parametrize("viewport,fits", [((1280, 800), True), ((1920, 1080), True), ((1100, 560), False)],
                         ids=["1280x800", "1920x1080", "1100x560-scrolls"])
def test_every_case_opens_at_its_prediction_with_lossless_films_that_fit(server_and_study, viewport, fits):
    """Three cases read at a laptop's and a desktop's screen size: each opens at its top (the
    prediction heading in view, even when the reader had scrolled down on the case before),
    the film is a PNG at the stored film's resolution and wholly on screen, the tiles are PNG
    (the animation a GIF), and Save is on screen without scrolling. On a screen too small for
    the read (`fits` False) the reader scrolls down to Save, and the next case still opens at
    its top."""
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright
    from sqlalchemy import select

    from browser import fetch_image, in_viewport, scroll_tops
    from cfviewer.imaging import load as load_film
    from cfviewer.study import responses as R
    from cfviewer.study.schema import DEFAULT_QUESTIONS, Assignment, Reader

    server, fx = server_and_study
    db = fx.open()
    try:
        with db.read() as s:
            bob = s.get(Reader, fx.reader_ids["bob"])
            reads = s.scalars(select(Assignment).where(Assignment.reader_id == bob.id)
                              .order_by(Assignment.position).limit(3)).all()
            views = [R.read_view(s, bob, a.id) for a in reads]
    finally:
        db.dispose()
    films = [load_film(v.image).shape for v in views]  # (H, W) of the stored films
    anchors = {q["key"]: q["anchors"] for q in DEFAULT_QUESTIONS}
    width, height = viewport
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(STEP_TIMEOUT_MS)
        expect.set_options(timeout=STEP_TIMEOUT_MS)
        page.goto(f"{server.url}?token={fx.tokens['bob']}", wait_until="commit")
        page.get_by_role("button", name="Start reading").click()
        for i, (view, (fh, fw)) in enumerate(zip(views, films)):
            heading = page.get_by_role("heading", name=f"The model predicts {view.pathology}")
            expect(page.get_by_text(f"Case {i + 1} of 12")).to_be_visible()
            wait_idle(page)
            page.wait_for_timeout(800)  # the scroll-to-top script's last retry
            assert in_viewport(page, heading), f"case {i + 1}: the prediction is not on screen"
            assert all(t == 0 for t in scroll_tops(page)), f"case {i + 1} opened scrolled: {scroll_tops(page)}"
            film = page.locator('.st-key-cfv_film [data-testid="stImage"] img').first
            expect(film).to_be_visible()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=film.element_handle())
            data = fetch_image(page, server.url, film)
            assert data[:8] == b"\x89PNG\r\n\x1a\n", f"case {i + 1}: the film is not served as PNG"
            with Image.open(io.BytesIO(data)) as im:
                assert im.size == (fw, fh), f"case {i + 1}: film served at {im.size}, stored {fw} x {fh}"
            assert page.evaluate("img => [img.naturalWidth, img.naturalHeight]", film.element_handle()) == [fw, fh]
            assert in_viewport(page, film) or not fits, f"case {i + 1}: the film runs off the screen"
            for tile in page.locator('.st-key-cfv_tiles [data-testid="stImage"] img').all():
                body = fetch_image(page, server.url, tile)
                assert body[:8] == b"\x89PNG\r\n\x1a\n" or body[:6] in (b"GIF87a", b"GIF89a")
            save = page.get_by_role("button", name="Save and next")
            assert in_viewport(page, save) or not fits, f"case {i + 1}: Save is below the fold"
            page.get_by_text(anchors["confidence"][3], exact=True).click()
            page.get_by_text(anchors["correct_feature"][1], exact=True).click()
            page.mouse.move(width // 2, height // 2)
            page.mouse.wheel(0, 3000)  # the reader scrolls down before saving
            page.wait_for_timeout(200)
            if not fits:
                assert max(scroll_tops(page)) > 0  # it did scroll: the next case must undo that
            save.click()
            expect(page.get_by_text(f"Case {i + 2} of 12")).to_be_visible()
        browser.close()
