"""The reader's process never loads torch.

A study with every explanation precomputed is built here (this process imports torch to run
the models); a separate Python process then serves the reader views from it exactly as the
app does (Streamlit's AppTest of app.py: worklist, case view with heat-map overlays, the
counterfactual animation GIF and the counterfactual frames, an answer saved and the next case
prefetched) and reports whether torch was ever imported there, and from where.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ui_fixtures as F

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

READER_SCRIPT = textwrap.dedent(r'''
    import json, sys, threading, traceback

    HEAVY = ("torch", "torchvision", "captum", "torchxrayvision")
    first_import = {}

    class Spy:  # records who imports torch first; lets the import go on
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in HEAVY and top not in first_import:
                first_import[top] = "".join(traceback.format_stack(limit=40)[:-1])
            return None

    sys.meta_path.insert(0, Spy())

    from streamlit.testing.v1 import AppTest

    app, tokens = sys.argv[1], json.loads(sys.argv[2])
    seen = {}

    def run(thing):  # an AppTest, or a widget of it after click() / set_value()
        at = thing.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    def captions(at):
        return [c for img in at.get("image") for c in img.captions]

    for name, token in tokens.items():
        at = AppTest.from_file(app, default_timeout=120)
        at.query_params["token"] = token
        at = run(at)
        worklist = [t.value for t in at.title]
        at = run(at.button(key="continue").click())
        case = captions(at)
        frames = []
        if any(t.key == "cfv_show" for t in at.toggle):
            at = run(at.toggle(key="cfv_show").set_value(True))
            frames = [c for c in captions(at) if c.startswith("Counterfactual frame")]
            at = run(at.toggle(key="cfv_show").set_value(False))
        keys = [r.key for r in at.radio if r.key and r.key.startswith("cfv_q_")]
        for key in keys:
            at.radio(key=key).set_value(3)
        at = run(next(b for b in at.button if b.label == "Save and next").click())
        progress = [p.proto.text for p in at.get("progress")]
        seen[name] = {"worklist": worklist, "case": case, "frames": frames, "progress": progress}

    # the reader page warms the next case's images in a daemon thread: let it finish
    for t in threading.enumerate():
        if t.name == "cfviewer-prefetch":
            t.join(60)

    # every reader's every case through the same renderer the pages use (all artifacts)
    from cfviewer.study.db import open_database
    from cfviewer.study.schema import Assignment, Reader
    from cfviewer.study import responses as R
    from cfviewer.ui import reading, viewer
    from sqlalchemy import select
    import os

    db = open_database(os.environ["CFVIEWER_DB_URL"])
    n_bytes = 0
    with db.read() as s:
        for reader in s.scalars(select(Reader)):
            for a in s.scalars(select(Assignment).where(Assignment.reader_id == reader.id)):
                view = R.read_view(s, reader, a.id)
                media = reading.explanation_media(s, a)
                fov = {"fov": view.field_of_view} if hasattr(view, "field_of_view") else {}
                n_bytes += viewer.render_defaults(view.image, media, 0.6, **fov)
                for m in media:
                    if m.has_frames:
                        n = len(viewer.load_frames(m.frames_path)["frames"])
                        window = viewer.preset_window(viewer.load_pixels(view.image), "Auto")
                        n_bytes += len(viewer.render_frame(m.frames_path, n - 1, window))
    db.dispose()

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
    print("RESULT " + json.dumps({"seen": seen, "rendered_bytes": n_bytes, "heavy_modules": loaded[:20],
                                  "first_import": first_import}))
''')


@pytest.fixture()
def fx(tmp_path_factory, tmp_path):
    return F.fresh_copy(F.template(tmp_path_factory), tmp_path / "db")


def test_serving_reader_views_never_imports_torch(fx, tmp_path):
    script = tmp_path / "serve_reader.py"
    script.write_text(READER_SCRIPT)
    env = {**os.environ, **fx.env()}
    proc = subprocess.run(
        [sys.executable, str(script), str(ROOT / "app.py"),
         json.dumps({"bob": fx.tokens["bob"], "alice": fx.tokens["alice"]})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])

    # the views were really served: worklist, overlays, the animation, the frames, next case
    bob, alice = out["seen"]["bob"], out["seen"]["alice"]
    assert bob["worklist"] == ["Welcome, bob"] and alice["worklist"] == ["Welcome, alice"]
    assert any(c.endswith(": heat map") for c in bob["case"]), bob  # Latent Shift map overlay
    assert any(c.endswith(": animation") for c in bob["case"]), bob  # the counterfactual GIF
    assert bob["frames"], bob  # a counterfactual frame shown large
    assert sum(c.endswith(": heat map") for c in alice["case"]) == 3, alice  # three baselines
    for who in (bob, alice):  # the answer was saved and the next case shown
        assert any(t.startswith("Case 2 of 12 · 1 of 12 cases done") for t in who["progress"]), who
    assert out["rendered_bytes"] > 0

    first = out["first_import"]
    assert not out["heavy_modules"], (
        f"the reader process imported {out['heavy_modules']}; first import of torch from:\n"
        + first.get("torch", next(iter(first.values()), "")))


def test_draw_module_and_explain_package_import_without_torch():
    code = ("import sys; import cfviewer.explain, cfviewer.explain.draw, cfviewer.ui.viewer, "
            "cfviewer.ui.reading, cfviewer.ui.components, cfviewer.ui.shell; "
            "from cfviewer.explain.draw import overlay; import numpy as np; "
            "overlay(np.zeros((8, 8), np.float32), np.eye(8, dtype=np.float32)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:5])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_render_reexports_the_torch_free_drawing_functions():
    from cfviewer.explain import draw, render

    for name in ("overlay", "to_grey", "display_window", "normalise_map", "colormap", "map_image", "RenderError"):
        assert getattr(render, name) is getattr(draw, name)
