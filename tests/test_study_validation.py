"""Study set-up input is checked by the study engine (cfviewer.study.studies / setup), so the CLI
(`cfviewer study create` / `readers`) and the web app (cfviewer.ui.research, the Study setup page)
refuse the same bad input with the same message, and nothing is written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

import ui_fixtures as F
from cfviewer.cli import main
from cfviewer.study import errors as E
from cfviewer.study import reference, setup, status, studies
from cfviewer.study.db import open_database
from cfviewer.study.schema import Study
from cfviewer.ui import research

# (CLI arguments after the study folder, web-path arms / pathologies, engine error, message part)
CREATE_CASES = {
    "unknown explainer": (["--arm", "Method A=gradient,not_a_method"],
                          dict(arms=[("Method A", ["gradient", "not_a_method"])]),
                          E.UnknownArmExplainerError, "arm 'Method A': unknown explainer 'not_a_method'; choose from"),
    "empty display name": (["--arm", " =gradient"], dict(arms=[(" ", ["gradient"])]),
                           E.ArmError, "every arm needs a display name"),
    "display name twice": (["--arm", "Method A=gradient", "--arm", "Method A=guided_backprop"],
                           dict(arms=[("Method A", ["gradient"]), ("Method A", ["guided_backprop"])]),
                           E.ArmError, "two arms are named 'Method A'"),
    "arm without explainer": (["--arm", "Method A="], dict(arms=[("Method A", [])]),
                              E.ArmError, "arm 'Method A' needs at least one explainer"),
    "explainer twice": (["--arm", "Method A=gradient,gradient"], dict(arms=[("Method A", ["gradient", "gradient"])]),
                        E.ArmError, "lists an explainer twice"),
    "unknown pathology": (["--pathologies", "Mass,Hernia"], dict(pathologies=["Mass", "Hernia"]),
                          E.StudyPathologyError, "unknown pathology 'Hernia'"),
    "pathology case": (["--pathologies", "mass"], dict(pathologies=["mass"]),
                       E.StudyPathologyError, "did you mean 'Mass'?"),
    "pathology twice": (["--pathologies", "Mass,Mass"], dict(pathologies=["Mass", "Mass"]),
                        E.StudyPathologyError, "pathology 'Mass' is listed twice"),
}


def _web_create(tmp_path, **kw):
    db = open_database(None, study_dir=tmp_path / "web")
    args = dict(seed=0, bundle=None, pathologies=["Mass", "Effusion"], arms=reference.reference_arms(),
                questions=reference.DEFAULT_QUESTIONS)
    args.update(kw)
    try:
        with pytest.raises(E.StudyError) as info:
            research.create_study(db, "same", tmp_path / "web", **args)
        with db.read() as s:
            assert s.scalar(select(func.count(Study.id))) == 0  # nothing written
    finally:
        db.dispose()
    return info.value


def _cli_create(tmp_path, capsys, extra):
    capsys.readouterr()
    assert main(["study", "create", str(tmp_path / "cli" / "same"), *extra]) == 2
    err = capsys.readouterr().err
    prefix = "cfviewer study: error: "
    assert err.startswith(prefix), err
    return err[len(prefix):].strip()


@pytest.mark.parametrize("case", list(CREATE_CASES))
def test_cli_and_web_refuse_the_same_study_with_the_same_message(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    cli_args, web_args, error, part = CREATE_CASES[case]
    web = _web_create(tmp_path, **web_args)
    assert isinstance(web, error) and part in str(web)
    assert _cli_create(tmp_path, capsys, cli_args) == str(web)


def test_engine_refuses_bad_arms_and_questions_before_writing(tmp_path):
    db = open_database(None, study_dir=tmp_path)
    try:
        with pytest.raises(E.UnknownArmExplainerError, match="'nope'") as info:
            setup.new_study(db, "s", tmp_path, arms=[("Method A", ["nope"])])
        assert "gradient" in info.value.known
        with pytest.raises(E.QuestionError, match="two questions have the key 'q'"):
            setup.new_study(db, "s", tmp_path, questions=[{"key": "q", "text": "A?"}, {"key": "q", "text": "B?"}])
        with pytest.raises(E.QuestionError, match="exactly 5 anchor"):
            setup.new_study(db, "s", tmp_path, questions=[{"key": "q", "text": "A?", "anchors": ["a"]}])
        assert status.study_names(db) == []
        made = setup.new_study(db, "s", tmp_path)  # the reference study's arms and questions
        assert made.arms == reference.reference_arms()
        ov = status.study_overview(db, "s")
        assert [(a["name"], a["methods"]) for a in ov.arms] == reference.reference_arms()
        assert [q["key"] for q in ov.questions] == list(reference.QUESTION_KEYS)
        with db.write() as s:
            st = studies.get_study(s, "s")
            with pytest.raises(E.ArmError, match="already has an arm named 'Method A'"):
                studies.add_arm(s, st, " Method A ", ["gradient"])  # stripped, then refused
            with pytest.raises(E.ArmError, match="display name"):
                studies.add_arm(s, st, "", ["gradient"])
    finally:
        db.dispose()


def test_cli_and_web_refuse_the_same_reader_names(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    assert main(["study", "create", str(tmp_path / "st")]) == 0
    db = open_database(None, study_dir=tmp_path / "st")
    try:
        for names, part in ((["x", "x"], "the reader name 'x' is listed twice"),
                            (["ann", "ann "], "the reader name 'ann' is listed twice")):
            with pytest.raises(E.ReaderNameError) as info:
                research.add_readers(db, "st", names)
            assert part in str(info.value)
            capsys.readouterr()
            assert main(["study", "readers", str(tmp_path / "st"), "--add", *names]) == 2
            assert capsys.readouterr().err.strip() == f"cfviewer study: error: {info.value}"
        assert main(["study", "readers", str(tmp_path / "st"), "--add", "ann"]) == 0
        with pytest.raises(E.ReaderNameError, match="already has a reader named 'ann'") as info:
            research.add_readers(db, "st", ["ann"])
        capsys.readouterr()
        assert main(["study", "readers", str(tmp_path / "st"), "--add", "ann"]) == 2
        assert capsys.readouterr().err.strip() == f"cfviewer study: error: {info.value}"
        with pytest.raises(E.ReaderNameError, match="at least one reader name"):
            research.add_readers(db, "st", ["", "  "])
        assert [r.name for r in status.reader_statuses(db, "st")] == ["ann"]
    finally:
        db.dispose()


def test_the_cli_status_and_the_pages_count_alike(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    assert main(["study", "create", str(tmp_path / "st")]) == 0
    assert main(["study", "readers", str(tmp_path / "st"), "--add", "ann", "bob"]) == 0
    capsys.readouterr()
    main(["study", "status", str(tmp_path / "st"), "--no-verify"])
    out = capsys.readouterr().out
    db = open_database(None, study_dir=tmp_path / "st")
    try:
        ov = research.overview(db, "st")
        table = research.reader_progress(db, "st")
    finally:
        db.dispose()
    assert f"cases imported: {ov.n_cases}; cohort: {ov.n_cohort}" in out
    assert f"answers stored: {ov.n_answers}" in out
    for _, row in table.iterrows():
        assert f"reader {row['reader']}: {row['done']}/{row['total']} reads" in out
    for name, methods in reference.REFERENCE_ARMS:
        assert f"arm {name!r}: {' + '.join(methods)}" in out


@pytest.mark.parametrize("arm_names, part", [(("", "Method B"), "every arm needs a display name"),
                                             (("Method A", "Method A"), "two arms are named 'Method A'")])
def test_the_setup_page_shows_the_engines_message(arm_names, part, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    empty = F.StudyFixture(tmp_path / "new", f"sqlite:///{tmp_path / 'new' / 'study.db'}", "x", {}, {})
    at = F.app_test(empty, monkeypatch)
    at.run()
    at.text_input(key="cfv_password").input(F.ADMIN_PASSWORD)
    next(b for b in at.button if b.label == "Sign in").click().run()
    next(t for t in at.text_input if t.label == "Study name").input("pilot")
    next(t for t in at.text_input if t.label == "Arm 1 display name").input(arm_names[0])
    next(t for t in at.text_input if t.label == "Arm 2 display name").input(arm_names[1])
    next(b for b in at.button if b.label == "Create study").click().run()
    assert not at.exception, at.exception
    shown = [e.value for e in at.error]
    assert len(shown) == 1 and shown[0].startswith("The study was not created: ") and part in shown[0]
    # the CLI refuses the same arms with the same message
    cli = ["--arm", f"{arm_names[0]}={','.join(reference.ARM_A_METHODS)}",
           "--arm", f"{arm_names[1]}={','.join(reference.ARM_B_METHODS)}"]
    assert _cli_create(tmp_path, capsys, cli) == shown[0].removeprefix("The study was not created: ")
