"""Simulated readers' answers stay out of the export and the analysis unless asked for, every
output that includes them says so, and "nothing to analyse" names the reason and the fix for
the user's own study (never "run the demo")."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cfviewer.analysis import AnalysisInputError, analyze, check_responses
from cfviewer.cli import main
from cfviewer.study import responses as R
from cfviewer.study import studies
from cfviewer.study.export import export_study, responses_frame
from cfviewer.study.schema import Reader
from cfviewer.study.simulate import simulate_frame, simulate_readers
from test_study_support import build_study

ANS = {"confidence": 4, "correct_feature": 2}
SIM3 = ("simulated-1", "simulated-2", "simulated-3")
READS = 12  # per reader: 6 cohort cases x 2 arms
N_REAL = 2 * READS * 2  # mixed: 2 real readers x 12 reads x 2 questions
N_SIM = 3 * READS * 2  # mixed: 3 simulated readers
N_ONLY = 2 * READS * 2  # only_simulated: 2 simulated readers


def _answer_all(b, name: str) -> int:
    rid = b.reader_ids[name]
    n = 0
    while True:
        with b.db.read() as s:
            nx = R.next_assignment(s, s.get(Reader, rid))
        if nx.status != "ready":
            return n
        R.record_response(b.db, rid, nx.assignment.id, {"confidence": 1 + n % 5, "correct_feature": 5 - n % 5})
        n += 1


@pytest.fixture()
def only_simulated(tmp_path):
    """A study whose only answers come from two simulated readers (like the demo)."""
    b = build_study(tmp_path, per_pathology=1, readers=("r1",), name="pilot")
    simulate_readers(b.db, b.name, n_readers=2, seed=1)
    yield b
    b.db.dispose()


@pytest.fixture()
def mixed(tmp_path):
    """Two real readers who answered everything, plus three simulated readers."""
    b = build_study(tmp_path, per_pathology=1, readers=("r1", "r2"), name="mixed")
    assert _answer_all(b, "r1") == READS and _answer_all(b, "r2") == READS
    simulate_readers(b.db, b.name, n_readers=3, seed=1)
    yield b
    b.db.dispose()


def _frame(b, **kw) -> pd.DataFrame:
    with b.db.read() as s:
        return responses_frame(s, studies.get_study(s, b.name), **kw)


def _export(b, out, **kw):
    with b.db.read() as s:
        return export_study(s, studies.get_study(s, b.name), out, **kw)


# ------------------------------------------------------------------------------- export ---

def test_responses_frame_leaves_simulated_out_unless_asked(mixed):
    real = _frame(mixed)
    assert len(real) == N_REAL and not real["simulated"].any()
    assert set(real["reader"]) == {"r1", "r2"}
    both = _frame(mixed, include_simulated=True)
    assert len(both) == len(real) + N_SIM and int(both["simulated"].sum()) == N_SIM
    from cfviewer.study.export import answer_counts

    with mixed.db.read() as s:
        counts = answer_counts(s, studies.get_study(s, mixed.name))
    assert (counts.real, counts.simulated) == (N_REAL, N_SIM)
    assert counts.simulated_readers == SIM3


def test_export_excludes_simulated_by_default_and_records_it(mixed, tmp_path):
    res = _export(mixed, tmp_path / "out")
    assert res.n_rows == N_REAL and not res.simulated_included and res.simulated_excluded == N_SIM
    csv = pd.read_csv(tmp_path / "out/responses.csv")
    assert len(csv) == N_REAL and not csv["simulated"].any()
    assert len(pd.read_parquet(tmp_path / "out/responses.parquet")) == N_REAL
    meta = json.loads((tmp_path / "out/study.json").read_text())["export"]
    assert meta["include_simulated"] is False and meta["simulated_included"] is False
    assert meta["simulated_answers"] == 0 and meta["simulated_excluded"] == N_SIM
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["simulated_included"] is False and set(manifest["sha256"]) == {
        "responses.csv", "responses.parquet", "study.json"}


def test_export_with_simulated_is_labelled(mixed, tmp_path):
    res = _export(mixed, tmp_path / "out", include_simulated=True)
    assert res.n_rows == N_REAL + N_SIM and res.simulated_included and res.simulated_answers == N_SIM
    assert res.simulated_readers == SIM3
    csv = pd.read_csv(tmp_path / "out/responses.csv")
    assert int(csv["simulated"].sum()) == N_SIM  # the column marks every simulated row
    assert set(csv.loc[csv["simulated"], "reader"]) == set(SIM3)
    meta = json.loads((tmp_path / "out/study.json").read_text())["export"]
    assert meta["simulated_included"] is True and meta["simulated_answers"] == N_SIM
    assert meta["simulated_readers"] == list(SIM3) and meta["simulated_excluded"] == 0
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["simulated_included"] is True and manifest["simulated_answers"] == N_SIM


# ----------------------------------------------------------------------------- analysis ---

def test_analyze_leaves_simulated_out_by_default(mixed):
    df = _frame(mixed, include_simulated=True)
    rep = analyze(df, n_boot=50, figures=False)
    assert rep.n_answers == N_REAL and rep.n_readers == 2 and not rep.includes_simulated
    assert rep.simulated_excluded == N_SIM and "simulated answer(s) excluded" in rep.title
    for stem, table in rep.tables().items():
        assert list(table.columns)[0] == "simulated_included" and not table["simulated_included"].any(), stem
    assert rep.info()["simulated_included"] is False and rep.simulated_note == ""
    real = analyze(_frame(mixed), n_boot=50, figures=False)
    pd.testing.assert_frame_equal(real.comparison, rep.comparison)


def test_analyze_with_simulated_is_labelled_everywhere(mixed):
    df = _frame(mixed, include_simulated=True)
    rep = analyze(df, n_boot=50, include_simulated=True)
    assert rep.n_answers == N_REAL + N_SIM and rep.includes_simulated
    assert rep.simulated_answers == N_SIM and rep.simulated_readers == SIM3
    assert f"includes {N_SIM} simulated answers from 3 simulated readers" in rep.title
    assert rep.title.startswith("Method B - Method A") and "SIMULATED" in rep.title
    for stem, table in rep.tables().items():
        assert table["simulated_included"].all(), stem
    assert rep.comparison.columns[0] != "simulated_included"  # the report's own tables are unchanged
    info = rep.info()
    assert info["simulated_included"] is True and info["simulated_answers"] == N_SIM
    assert set(rep.figures) == {"responses", "paired_means", "pathology"}
    for key, fig in rep.figures.items():
        assert "SIMULATED" in fig.layout.title.text and f"{N_SIM} simulated answers" in fig.layout.title.text, key


def test_a_table_read_back_from_csv_is_still_filtered(mixed, tmp_path):
    _export(mixed, tmp_path / "out", include_simulated=True)
    csv = pd.read_csv(tmp_path / "out/responses.csv").astype({"simulated": "string"})  # "True"/"False" text
    assert analyze(csv, n_boot=50, figures=False).n_answers == N_REAL
    assert analyze(csv, n_boot=50, figures=False, include_simulated=True).simulated_answers == N_SIM


def test_all_simulated_names_the_reason_and_the_fix(only_simulated):
    df = _frame(only_simulated, include_simulated=True)
    with pytest.raises(AnalysisInputError) as ei:
        analyze(df, n_boot=50, study="pilot")
    msg = str(ei.value)
    assert "no answers from real readers yet in study 'pilot'" in msg
    assert f"{N_ONLY} simulated answers from 2 simulated readers excluded" in msg
    assert "include_simulated=True" in msg and "demo" not in msg
    assert analyze(df, n_boot=50, figures=False, include_simulated=True).includes_simulated
    # the simulated frame is simulated too
    sim = simulate_frame(2, 12, seed=0)
    with pytest.raises(AnalysisInputError, match="no answers from real readers yet"):
        analyze(sim, n_boot=50)


def test_empty_tables_never_suggest_the_demo(only_simulated):
    empty = _frame(only_simulated)  # simulated left out: nothing left
    assert empty.empty
    with pytest.raises(AnalysisInputError) as ei:
        analyze(empty, study="pilot")
    assert "no answers yet in study 'pilot'" in str(ei.value) and "demo" not in str(ei.value)
    with pytest.raises(AnalysisInputError) as ei:
        check_responses(empty)
    assert "no rows" in str(ei.value) and "demo" not in str(ei.value)


# ---------------------------------------------------------------------------------- CLI ---

def test_cli_export_and_analyze(mixed, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    study = str(mixed.root)
    assert main(["study", "export", study, "--out", str(tmp_path / "exp")]) == 0
    out = capsys.readouterr().out
    assert f"exported {N_REAL} answers" in out and f"{N_SIM} simulated answer(s) from 3 simulated reader(s) left out" in out
    assert not pd.read_csv(tmp_path / "exp/responses.csv")["simulated"].any()
    assert main(["study", "export", study, "--out", str(tmp_path / "exp2"), "--include-simulated"]) == 0
    out = capsys.readouterr().out
    assert f"exported {N_REAL + N_SIM} answers" in out and "SIMULATED: includes" in out
    assert json.loads((tmp_path / "exp2/manifest.json").read_text())["simulated_included"] is True

    assert main(["study", "analyze", study, "--out", str(tmp_path / "ana"), "--n-boot", "50", "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert f"Method B - Method A: {N_REAL} answers from 2 readers" in out and "SIMULATED" not in out
    assert not pd.read_csv(tmp_path / "ana/comparison.csv")["simulated_included"].any()
    assert json.loads((tmp_path / "ana/analysis.json").read_text())["simulated_excluded"] == N_SIM

    assert main(["study", "analyze", study, "--out", str(tmp_path / "ana2"), "--n-boot", "50",
                 "--include-simulated"]) == 0
    out = capsys.readouterr().out
    assert f"{N_REAL + N_SIM} answers" in out and f"SIMULATED: includes {N_SIM} simulated answers from 3 simulated readers" in out
    for stem in ("comparison", "summary", "kappa", "alpha"):
        assert pd.read_csv(tmp_path / f"ana2/{stem}.csv")["simulated_included"].all(), stem
    info = json.loads((tmp_path / "ana2/analysis.json").read_text())
    assert info["simulated_included"] is True and info["simulated_answers"] == N_SIM
    assert "SIMULATED" in (tmp_path / "ana2/paired_means.html").read_text()


def test_cli_analyze_of_an_all_simulated_study_says_what_to_do(only_simulated, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    study = str(only_simulated.root)
    assert main(["study", "analyze", study, "--out", str(tmp_path / "ana"), "--n-boot", "50"]) == 2
    err = capsys.readouterr().err
    assert "no answers from real readers yet in study 'pilot'" in err
    assert f"{N_ONLY} simulated answers from 2 simulated readers excluded" in err
    assert "--include-simulated" in err and "demo" not in err
    assert main(["study", "analyze", study, "--out", str(tmp_path / "ana"), "--n-boot", "50", "--no-figures",
                 "--include-simulated"]) == 0
    assert "SIMULATED" in capsys.readouterr().out
    assert main(["study", "export", study, "--out", str(tmp_path / "exp")]) == 0  # an empty export is fine ...
    out = capsys.readouterr().out
    assert "exported 0 answers" in out and "pass --include-simulated" in out and "demo" not in out  # ... and says why


# ---------------------------------------------------------------------------------- web ---

def test_web_export_bundle_is_labelled(mixed):
    from cfviewer.ui import research

    real = research.export_files(mixed.db, mixed.name, include_simulated=False)
    assert real.n_rows == N_REAL and real.simulated_answers == 0 and real.simulated_excluded == N_SIM
    assert json.loads(real.files["manifest.json"])["simulated_included"] is False
    both = research.export_files(mixed.db, mixed.name, include_simulated=True)
    assert both.n_rows == N_REAL + N_SIM and both.simulated_answers == N_SIM and both.simulated_readers == SIM3
    assert json.loads(both.files["manifest.json"])["simulated_included"] is True
    assert json.loads(both.files["study.json"])["export"]["simulated_included"] is True
    counts = research.answer_counts(mixed.db, mixed.name)
    assert (counts.real, counts.simulated) == (N_REAL, N_SIM)
