"""AppTest of the researcher pages: password gate, setup, precompute, sandbox, progress,
analysis and export; readers cannot reach any of them."""

from __future__ import annotations


import pytest
from sqlalchemy import func, select

import ui_fixtures as F
from cfviewer.study.schema import Case, Study

pytestmark = pytest.mark.slow

RESEARCHER_PAGES = [f"pages/researcher/admin_{n}.py"
                    for n in ("setup", "precompute", "sandbox", "progress", "analysis", "export")]


@pytest.fixture()
def fx(tmp_path_factory, tmp_path):
    return F.fresh_copy(F.template(tmp_path_factory), tmp_path / "db")


def _signed_in(fx, monkeypatch):
    at = F.app_test(fx, monkeypatch)
    at.run()
    at.text_input(key="cfv_password").input(F.ADMIN_PASSWORD)
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception, at.exception
    return at


def _page(at, path):
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def _all_text(at) -> str:
    out = []
    for kind in ("markdown", "error", "info", "success", "warning", "caption", "title", "subheader"):
        out += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(out)


def test_wrong_password_is_refused(fx, monkeypatch):
    at = F.app_test(fx, monkeypatch)
    at.run()
    at.text_input(key="cfv_password").input("not the password")
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert any(e.value == "Wrong password." for e in at.error)
    assert "Study setup" not in _all_text(at)


def test_without_a_configured_password_researcher_pages_stay_locked(fx, monkeypatch):
    at = F.app_test(fx, monkeypatch)
    monkeypatch.delenv("CFVIEWER_ADMIN_PASSWORD")
    at.run()
    assert any("CFVIEWER_ADMIN_PASSWORD" in i.value for i in at.info)
    assert len(at.text_input) == 0


@pytest.mark.parametrize("page", RESEARCHER_PAGES)
def test_a_reader_cannot_open_researcher_pages(fx, monkeypatch, page):
    at = F.app_test(fx, monkeypatch, token=fx.tokens["alice"])
    at.run()
    try:
        at.switch_page(page).run()
    except Exception:
        return  # not even registered for this session
    text = _all_text(at)
    assert "Reader progress" not in text and "Export" not in text and "Study setup" not in text
    assert not any(b.label.startswith("Answers") for b in at.get("download_button"))


def test_setup_overview_and_adding_readers_shows_their_links_once(fx, monkeypatch):
    at = _page(_signed_in(fx, monkeypatch), "pages/researcher/admin_setup.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cohort"] == "6" and metrics["Readers"] == "2" and metrics["Reads"] == "24"
    names = next(t for t in at.text_area if t.label.startswith("New readers"))
    names.input("dana\neve")
    next(b for b in at.button if b.label == "Add readers").click().run()
    assert not at.exception
    links = at.dataframe[-1].value
    assert list(links["reader"]) == ["dana", "eve"]
    assert all("?token=" in x for x in links["link"])
    assert any("Scheduled 2 reader(s)" in s.value for s in at.success)
    token = links["link"][0].split("token=")[1]
    # the link works for the new reader
    at2 = F.app_test(fx, monkeypatch, token=token)
    at2.run()
    assert any("Welcome, dana" in t.value for t in at2.title)


def test_setup_page_sizes_the_study_from_van_dyke_until_real_answers_exist(fx, monkeypatch):
    at = _page(_signed_in(fx, monkeypatch), "pages/researcher/admin_setup.py")
    assert not at.exception, at.exception
    assert any("Van Dyke" in c.value for c in at.caption)
    table = next(d.value for d in at.dataframe if "readers" in d.value.columns and "ddf" in d.value.columns)
    assert list(table["readers"])[:3] == [3, 4, 5] and int(table.loc[table["readers"] == 6, "cases"].iloc[0]) == 170
    next(n for n in at.number_input if n.label == "AUC difference to detect").set_value(0.1).run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "ddf" in d.value.columns)
    assert int(table.loc[table["readers"] == 6, "cases"].iloc[0]) < 170


def test_setup_import_reports_every_problem_and_imports_nothing(fx, monkeypatch, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "labels.csv").write_text("id,path,Effusion\nx1,missing.png,1\nx2,zero.png,2\n")
    (bad / "zero.png").write_bytes(b"")
    at = _page(_signed_in(fx, monkeypatch), "pages/researcher/admin_setup.py")
    next(t for t in at.text_input if t.label == "Folder with the images").input(str(bad))
    next(b for b in at.button if b.label == "Import").click().run()
    assert any("Nothing was imported" in e.value for e in at.error)
    problems = list(at.dataframe[0].value["problem"])
    assert any("missing.png" in p for p in problems) and any("must be 0 or 1" in p for p in problems)
    db = fx.open()
    with db.read() as s:
        assert s.scalar(select(func.count(Case.id))) == 24
    db.dispose()


def test_create_a_new_study_in_an_empty_database(tmp_path, monkeypatch):
    empty = F.StudyFixture(tmp_path / "new", f"sqlite:///{tmp_path / 'new' / 'study.db'}", "x", {}, {})
    at = F.app_test(empty, monkeypatch)
    at.run()
    assert any("No study database" in w.value for w in at.warning)  # empty state for everyone
    at.text_input(key="cfv_password").input(F.ADMIN_PASSWORD)
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception, at.exception
    next(t for t in at.text_input if t.label == "Study name").input("pilot")
    next(b for b in at.button if b.label == "Create study").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cases"] == "0"
    db = empty.open()
    with db.read() as s:
        st = s.scalars(select(Study)).one()
        assert st.name == "pilot" and [a.name for a in st.arms] == ["Method A", "Method B"]
        assert [a.method_names for a in st.arms] == [F.ARM_A, F.ARM_B]
        assert [q.key for q in st.questions] == ["confidence", "correct_feature"]
    db.dispose()


def test_precompute_page_shows_status_and_resumes(fx, monkeypatch):
    at = _page(_signed_in(fx, monkeypatch), "pages/researcher/admin_precompute.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Case x arm ready"] == "12 / 12"
    next(b for b in at.button if b.label == "Run precompute").click().run()
    assert not at.exception, at.exception
    assert any("computed 0 explanations, 36 up to date" in s.value for s in at.success)


def test_sandbox_runs_explainers_side_by_side_with_timings(fx, monkeypatch):
    at = _page(_signed_in(fx, monkeypatch), "pages/researcher/admin_sandbox.py")
    at.multiselect[0].set_value(["gradient", "latentshift-max"]).run()
    next(b for b in at.button if b.label == "Run").click().run(timeout=120)
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["explainer"]) == ["gradient", "latentshift-max"]
    assert (table["status"] == "ok").all() and (table["seconds"] > 0).all()
    captions = [c for img in at.get("image") for c in img.captions]
    assert captions == ["gradient", "latentshift-max", "latentshift-max: animation"]


def test_progress_analysis_and_export_with_simulated_readers(fx, monkeypatch):
    from cfviewer.study.simulate import simulate_readers

    db = fx.open()
    simulate_readers(db, fx.name, n_readers=2, seed=1)
    db.dispose()
    at = _page(_signed_in(fx, monkeypatch), "pages/researcher/admin_progress.py")
    table = at.dataframe[0].value
    assert set(table["reader"]) >= {"alice", "bob"} and table["simulated"].sum() == 2
    assert (table.loc[table["simulated"], "done"] == 12).all()

    _page(at, "pages/researcher/admin_analysis.py")
    # simulated answers are left out by default; the notice says why and offers one click to include them
    assert at.checkbox[0].label == "Include simulated readers' answers" and at.checkbox[0].value is False
    note = next(i.value for i in at.info if "No answers from real readers yet" in i.value)
    assert f"in study {fx.name!r}" in note and "48 answers come from 2 simulated reader(s)" in note
    assert "demo" not in note and not at.warning and not at.dataframe
    next(b for b in at.button if b.label.startswith("Include the 48 simulated answers")).click().run()
    assert not at.exception, at.exception
    assert at.checkbox[0].value is True
    assert any("SIMULATED answers included" in w.value and "48 of these 48 answers" in w.value for w in at.warning)
    assert any(c.value.startswith("Method B - Method A") and "[SIMULATED: includes 48 simulated answers from 2 "
               "simulated readers" in c.value for c in at.caption)
    comparison = at.dataframe[0].value
    assert set(comparison["stratum_kind"]) >= {"all", "stratum", "pathology"}
    # Holm within the declared primary analysis (all cases x each question); the rest exploratory
    assert set(comparison.loc[comparison["family"] == "primary", "stratum_kind"]) == {"all"}
    assert any("Primary (confirmatory) analysis: all" in c.value for c in at.caption)
    # the MRMC tab: confidence as a score for TP vs FP, per arm, readers and cases random
    mrmc = at.dataframe[1].value
    # this small cohort has 1 false positive: the table says why there is no MRMC test
    assert mrmc.iloc[0]["subset"] == "all cases"
    assert "at least 2 positive and 2 negative" in mrmc.iloc[0]["note"]
    assert any(b.proto.label == "Download the MRMC tables (CSV)" for b in at.get("download_button"))
    assert len(at.get("plotly_chart")) >= 2
    at.selectbox[2].set_value("wilcox").run()
    assert not at.exception, at.exception
    assert any("SIMULATED answers included" in w.value for w in at.warning)
    at.checkbox[0].uncheck().run()
    assert any("No answers from real readers yet" in i.value for i in at.info) and not at.warning

    _page(at, "pages/researcher/admin_export.py")
    assert at.checkbox[0].value is False and not at.warning
    assert any("48 simulated answer(s) left out" in c.value for c in at.caption)
    at.checkbox[0].check().run()
    assert not at.exception, at.exception
    assert any("SIMULATED answers included" in w.value and "48 of these 48 rows" in w.value for w in at.warning)
    downloads = {b.proto.label: b for b in at.get("download_button")}
    assert {"Answers (CSV)", "Answers (Parquet)", "Study configuration (JSON)", "SHA-256 manifest",
            "Everything as one ZIP"} <= set(downloads)
