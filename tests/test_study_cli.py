"""`cfviewer study ...` end to end through the CLI dispatcher."""

from __future__ import annotations

import pandas as pd
import pytest

from cfviewer.cli import main
from test_study_support import positive_bundle, write_cases

SUBCOMMANDS = ("create", "import", "sample", "readers", "precompute", "status", "export", "analyze")


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as ei:
        main(["study", sub, "--help"])
    assert ei.value.code == 0
    assert "usage: cfviewer study " + sub in capsys.readouterr().out


@pytest.mark.slow
def test_study_lifecycle_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    study = str(tmp_path / "cli_study")
    bdir = tmp_path / "bundle"
    positive_bundle().save(bdir)
    write_cases(tmp_path / "incoming", 24)

    assert main(["study", "create", study, "--bundle", str(bdir), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "created study 'cli_study'" in out and "latentshift-max" in out
    assert main(["study", "create", study]) == 2  # exists
    assert "already exists" in capsys.readouterr().err

    (tmp_path / "incoming" / "case003.png").write_bytes(b"")
    assert main(["study", "import", study, str(tmp_path / "incoming"), "--labels", "labels.csv", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nothing was imported" in err and "case003" in err
    write_cases(tmp_path / "incoming", 24)
    assert main(["study", "import", study, str(tmp_path / "incoming"), "--labels", "labels.csv", "--quiet"]) == 0
    assert "imported 24 cases" in capsys.readouterr().out

    assert main(["study", "sample", study, "--per-pathology", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "TP req" in out and "cohort: 12 cases" in out

    assert main(["study", "readers", study, "--add", "ann", "bob"]) == 0
    out = capsys.readouterr().out
    assert out.count("http://localhost:8501/?token=") == 2 and "scheduled 2 reader(s)" in out
    assert "ann: 0/24 reads done" in out

    assert main(["study", "precompute", study, "--limit", "2", "--quiet", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "2 case x arm" in out and "throughput" in out

    assert main(["study", "status", study]) == 0
    out = capsys.readouterr().out
    assert "cohort: 12" in out and "precomputed: 2/24 case x arm" in out and "0 problem(s)" in out

    from cfviewer.study.db import open_database
    from cfviewer.study.simulate import simulate_readers

    db = open_database(study_dir=study)
    sim = simulate_readers(db, "cli_study", n_readers=2, seed=1)
    db.dispose()
    assert sim.reads == 48

    assert main(["study", "export", study, "--out", str(tmp_path / "exp"), "--include-simulated"]) == 0
    df = pd.read_parquet(tmp_path / "exp/responses.parquet")
    assert len(df) == 96 and df["simulated"].all()
    assert main(["study", "export", study, "--out", str(tmp_path / "exp2")]) == 0  # simulated left out by default
    assert len(pd.read_csv(tmp_path / "exp2/responses.csv")) == 0
    capsys.readouterr()

    assert main(["study", "analyze", study, "--out", str(tmp_path / "ana"), "--n-boot", "50", "--no-figures"]) == 2
    assert "no answers from real readers yet" in capsys.readouterr().err
    assert main(["study", "analyze", study, "--out", str(tmp_path / "ana"), "--n-boot", "50", "--no-figures",
                 "--include-simulated"]) == 0
    out = capsys.readouterr().out
    assert "Method B - Method A" in out and "confidence" in out and "SIMULATED" in out
    comp = pd.read_csv(tmp_path / "ana/comparison.csv")
    assert {"p", "n_zero", "zero_method"} <= set(comp.columns) and (comp["zero_method"] == "pratt").all()


def test_unknown_study_and_bad_arm_are_clear_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    assert main(["study", "status", str(tmp_path / "nowhere")]) == 2
    assert "no study named 'nowhere'" in capsys.readouterr().err
    assert main(["study", "create", str(tmp_path / "x"), "--arm", "Method A=gradient,not_a_method"]) == 2
    assert "unknown explainer 'not_a_method'" in capsys.readouterr().err


def test_create_checks_the_bundle_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    images = tmp_path / "images"
    write_cases(images, 2)  # an image folder given as the bundle
    half = tmp_path / "half"
    positive_bundle().save(half)
    (half / "autoencoder.pt").unlink()  # bundle.json names weights that are not there
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "bundle.json").write_text("{not json")
    cases = [(images, ["image folder", "bundle.json", "cfviewer train --out DIR", "cfviewer study import"]),
             (tmp_path / "missing", ["does not exist", "cfviewer train --out DIR"]),
             (half, ["autoencoder weights", "autoencoder.pt", "copy the whole bundle folder"]),
             (tmp_path / "badjson", ["not readable JSON"])]
    for i, (bdir, words) in enumerate(cases):
        study = tmp_path / f"s{i}"
        assert main(["study", "create", str(study), "--bundle", str(bdir)]) == 2
        err = capsys.readouterr().err
        assert f"model bundle {bdir}" in err, err  # names DIR ...
        for w in words:  # ... what is wrong and the fix
            assert w in err, (w, err)
        assert not (study / "study.db").exists()  # refused before anything was written
    good = tmp_path / "bundle"
    positive_bundle().save(good)
    assert main(["study", "create", str(tmp_path / "ok"), "--bundle", str(good)]) == 0
