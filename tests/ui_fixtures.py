"""A small study for the web-app tests (no tests here).

`build_template(dir)` makes a real study with the study engine (`cfviewer.study.demo.
build_sample_study`): 24 phantoms at 64 px, a random bundle whose thresholds make every
prediction positive (so TP / FP follow the labels), a cohort of one case per pathology, two
arms like the reference study (gradient + guided backprop + integrated gradients vs
latentshift-max + animation), readers alice and bob, the crossover schedule, and every
explanation precomputed by `cfviewer.study.artifacts.precompute`.

`fresh_copy(template, dir)` copies the database so each test starts with no answers.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cfviewer.study.reference import reference_arms

ARM_A, ARM_B = (methods for _, methods in reference_arms())  # the sample study's arms

RES = 64
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

        return open_database(self.db_url, study_dir=self.root)  # the files may be apart from the db


def build_template(base: Path, *, readers=("alice", "bob"), name: str = "uitest",
                   config: dict | None = None, n_phantoms: int = 24) -> StudyFixture:
    from cfviewer.study.demo import build_sample_study

    st = build_sample_study(base, name=name, readers=readers, n_phantoms=n_phantoms, image_size=RES,
                            resolution=RES, config=config)
    return StudyFixture(st.root, st.db_url, st.name, st.tokens, st.reader_ids)


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


def set_config(fx: StudyFixture, **changes) -> None:
    """Change study settings (e.g. min_gap_hours) in this copy's database."""
    from cfviewer.study.studies import get_study, update_config

    db = fx.open()
    try:
        with db.write() as s:
            update_config(s, get_study(s, fx.name), **changes)
    finally:
        db.dispose()
