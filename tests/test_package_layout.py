"""The installed package holds no benchmark, test fixture or developer tool (issue 9, section 3),
and every benchmark command the docs name exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cfviewer"
TOOLING_NAMES = re.compile(r"^(bench|.*_bench|benchmark.*|screenshots?|browser|fixtures?|conftest|test_.*)\.py$")
TOOLING_IMPORTS = re.compile(r"^\s*(import|from)\s+(pytest|playwright|streamlit\.testing)\b", re.M)


def test_no_module_under_cfviewer_is_a_benchmark_fixture_or_tool():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert modules
    # cfviewer/cli/bench.py is the `cfviewer bench` sub-command (one module per command, named
    # after it); the evaluation it runs is cfviewer/evaluation/
    named = [str(p.relative_to(ROOT)) for p in modules
             if TOOLING_NAMES.match(p.name) and p.parent != PACKAGE / "cli"]
    assert named == [], f"benchmarks go to benchmarks/, tools to scripts/, fixtures to tests/: {named}"
    importing = [str(p.relative_to(ROOT)) for p in modules
                 if TOOLING_IMPORTS.search(p.read_text(encoding="utf-8"))]
    assert importing == [], f"test or browser tooling imported by the package: {importing}"


def test_every_benchmark_command_in_the_docs_exists():
    docs = [ROOT / "README.md", ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "ARCHITECTURE.md"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in docs if p.is_file())
    scripts = set(re.findall(r"python ((?:benchmarks|scripts)/[\w./-]+\.py)", text))
    modules = set(re.findall(r"python -m (cfviewer[\w.]*)", text))
    assert scripts, "docs/benchmarks.md names its timing scripts"
    missing = sorted(s for s in scripts if not (ROOT / s).is_file())
    for m in modules:
        path = ROOT / Path(*m.split("."))
        if not (path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()):
            missing.append(f"-m {m}")
    assert missing == [], f"commands in the docs that do not exist: {missing}"
