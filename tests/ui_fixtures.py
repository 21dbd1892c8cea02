"""A small study for the web-app tests (no tests here).

`build_template(dir)` makes a real study with the study engine: 24 phantoms at 64 px, a
random bundle whose thresholds make every prediction positive (so TP / FP follow the labels),
a cohort of one case per pathology, two arms like the reference study (three gradient maps vs
latentshift-max + animation), two readers and the crossover schedule. Its explanations are
synthetic (a Gaussian blob per method, frames that fade the blob) so the tests do not depend on
explainer output, but they are written exactly as precompute writes them: files under
artifacts/ and one `Artifact` row each (image_png, map_npy, overlay_png, explanation_json and,
for Latent Shift, frames_npz, gif, counterfactual_png).

`fresh_copy(template, dir)` copies the database so each test starts with no answers.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ARM_A = ["gradient", "guided_backprop", "integrated_gradients"]
ARM_B = ["latentshift-max"]
RES = 64
N_FRAMES = 6
ADMIN_PASSWORD = "correct horse battery"
ANSWERS = {"confidence": 4, "correct_feature": 2}


@dataclass
class StudyFixture:
    root: Path
    db_url: str
    name: str
    tokens: dict[str, str]
    reader_ids: dict[str, int]
    extra: dict = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {"CFVIEWER_STUDY_DIR": str(self.root), "CFVIEWER_DB_URL": self.db_url,
                "CFVIEWER_ADMIN_PASSWORD": ADMIN_PASSWORD}

    def open(self):
        from cfviewer.study.db import open_database

        return open_database(self.db_url)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _blob(shape: tuple[int, int], cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    return np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))).astype(np.float32)


def write_synthetic_artifacts(db, study_name: str) -> int:
    """Artifacts for every (cohort case, arm) as precompute lays them out; returns the count."""
    from sqlalchemy import select

    from cfviewer import imaging
    from cfviewer.explain.base import Explanation
    from cfviewer.explain.render import overlay, save_png, write_gif
    from cfviewer.study.schema import Artifact, CohortItem
    from cfviewer.study.studies import get_study

    n = 0
    with db.write() as s:
        study = get_study(s, study_name)
        root = Path(study.root)
        items = list(s.scalars(select(CohortItem).where(CohortItem.study_id == study.id)))
        for item in items:
            case = item.case
            pixels = imaging.load(root / case.source_path)
            img = imaging.resize(pixels, RES)
            case_dir = root / "artifacts" / case.case_key
            for arm in study.arms:
                arm_dir = case_dir / arm.name.replace(" ", "_")
                arm_dir.mkdir(parents=True, exist_ok=True)

                def add(method: str, kind: str, path: Path, **extra) -> None:
                    s.add(Artifact(study_id=study.id, case_id=case.id, arm_id=arm.id, method=method,
                                   kind=kind, path=str(path.relative_to(root)), sha256=_sha(path),
                                   params={}, params_hash=hashlib.sha256(
                                       f"{case.sha256}{arm.id}{method}{kind}".encode()).hexdigest(),
                                   timings={"total": 0.01}, status="done", **extra))

                image_png = imaging.write_png16(arm_dir / "image.png", pixels)
                add("input", "image_png", image_png)
                for k, m in enumerate(arm.methods):
                    name = m["name"]
                    heat = _blob((RES, RES), RES * (0.3 + 0.15 * k), RES * (0.35 + 0.1 * k), RES / 8)
                    mpath = arm_dir / f"{name}.map.npy"
                    np.save(mpath, heat)
                    add(name, "map_npy", mpath)
                    add(name, "overlay_png", save_png(overlay(img, heat), arm_dir / f"{name}.overlay.png"))
                    summary = {"method": name, "target": item.pathology, "resolution": RES,
                               "pred_original": item.probability}
                    if name.startswith("latentshift"):
                        lambdas = np.linspace(-120.0, 0.0, N_FRAMES).astype(np.float32)
                        fade = np.linspace(1.0, 0.0, N_FRAMES)[:, None, None]
                        frames = (img[None] - 400.0 * fade * heat[None]).astype(np.float32)
                        preds = np.linspace(0.1, item.probability, N_FRAMES).astype(np.float32)
                        fpath = arm_dir / f"{name}.frames.npz"
                        np.savez_compressed(fpath, frames=frames, lambdas=lambdas, frame_preds=preds, image=img)
                        add(name, "frames_npz", fpath)
                        e = Explanation(method=name, target=item.pathology, map=heat, image=img,
                                        pred_original=item.probability, frames=frames, lambdas=lambdas,
                                        frame_preds=preds, counterfactual=frames[0],
                                        pred_reconstruction=float(preds[-1]))
                        add(name, "gif", write_gif(e, arm_dir / f"{name}.gif", size=128))
                        add(name, "counterfactual_png",
                            imaging.write_png16(arm_dir / f"{name}.counterfactual.png", frames[0]))
                        summary = e.summary()
                    jpath = arm_dir / f"{name}.json"
                    jpath.write_text(json.dumps(summary))
                    add(name, "explanation_json", jpath)
                    n += 1
    return n


def build_template(base: Path, *, readers=("alice", "bob"), name: str = "uitest",
                   config: dict | None = None, n_phantoms: int = 24) -> StudyFixture:
    from cfviewer.models.bundle import random_bundle
    from cfviewer.phantoms import write_dataset
    from cfviewer.study import cohort, design, studies
    from cfviewer.study.db import open_database

    root = base / name
    write_dataset(root / "cases", n_phantoms, size=RES, seed=3, dicom=False, progress=False)
    bundle = random_bundle(RES, seed=0)
    bundle.thresholds = {p: 0.0 for p in bundle.pathologies}
    db = open_database(None, study_dir=root)
    try:
        with db.write() as s:
            st = studies.create_study(s, name, root, config=config)
            studies.add_arm(s, st, "Method A", ARM_A)
            studies.add_arm(s, st, "Method B", ARM_B)
            cohort.import_cases(s, st, root / "cases", "labels.csv")
            cohort.sample_cohort(s, st, bundle, per_pathology=1, fill=True, bundle_id="random@test")
            new = studies.add_readers(s, st, readers)
            design.build_schedule(s, st)
            tokens = {r.reader.name: r.token for r in new}
            ids = {r.reader.name: r.reader.id for r in new}
        write_synthetic_artifacts(db, name)
        url = db.url
    finally:
        db.dispose()
    return StudyFixture(root, url, name, tokens, ids)


def fresh_copy(template: StudyFixture, dest: Path) -> StudyFixture:
    """The template's database copied to `dest` (files stay in the template folder)."""
    import sqlite3

    dest.mkdir(parents=True, exist_ok=True)
    src_db = template.root / "study.db"
    target = dest / "study.db"
    with sqlite3.connect(src_db) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return StudyFixture(template.root, f"sqlite:///{target}", template.name, dict(template.tokens),
                        dict(template.reader_ids))


def copy_tree(template: StudyFixture, dest: Path) -> StudyFixture:
    """A full copy (files + database) whose study root is rewritten to `dest`."""
    from sqlalchemy import update

    from cfviewer.study.db import open_database
    from cfviewer.study.schema import Study

    shutil.copytree(template.root, dest)
    db = open_database(f"sqlite:///{dest / 'study.db'}")
    try:
        with db.write() as s:
            s.execute(update(Study).values(root=str(dest.resolve())))
    finally:
        db.dispose()
    return StudyFixture(dest, f"sqlite:///{dest / 'study.db'}", template.name, dict(template.tokens),
                        dict(template.reader_ids))


_TEMPLATES: dict[str, StudyFixture] = {}


def template(tmp_path_factory, key: str = "default", **kwargs) -> StudyFixture:
    """One template per test process and key (built on first use)."""
    if key not in _TEMPLATES:
        _TEMPLATES[key] = build_template(tmp_path_factory.mktemp(f"ui-template-{key}"), **kwargs)
    return _TEMPLATES[key]


def app_test(fx: StudyFixture, monkeypatch, token: str | None = None, timeout: float = 30):
    """An AppTest of app.py against the study `fx` (a fresh AppTest = a browser reload)."""
    from streamlit.testing.v1 import AppTest

    for k, v in fx.env().items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=timeout)
    if token is not None:
        at.query_params["token"] = token
    return at
