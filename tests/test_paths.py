"""cfviewer.paths: library code finds the web app (app.py, pages/) through app_root(), in a
checkout and in an installed wheel (pyproject's data-files)."""

from __future__ import annotations

import glob
import sys
import sysconfig
from pathlib import Path

import pytest

from cfviewer import paths

ROOT = Path(__file__).resolve().parents[1]


def test_checkout_app_root_is_beside_the_package(monkeypatch):
    monkeypatch.delenv("CFVIEWER_APP_ROOT", raising=False)
    assert paths.app_root() == ROOT and paths.app_script() == ROOT / "app.py"
    from cfviewer.ui import shell

    assert shell.PAGES == ROOT / "pages" and shell.READER_PAGES.is_dir()


def test_installed_copy_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("CFVIEWER_APP_ROOT", raising=False)
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path / "site-packages")  # no app.py there
    prefix = tmp_path / "venv"
    monkeypatch.setattr(sys, "prefix", str(prefix))
    with pytest.raises(FileNotFoundError, match="CFVIEWER_APP_ROOT"):
        paths.app_root()
    (prefix / "share/cfviewer").mkdir(parents=True)
    (prefix / "share/cfviewer/app.py").write_text("")
    assert paths.app_root() == prefix / "share/cfviewer"
    monkeypatch.setenv("CFVIEWER_APP_ROOT", str(tmp_path / "elsewhere"))
    assert paths.app_root() == tmp_path / "elsewhere"


def test_the_wheel_installs_app_py_and_every_page_script():
    """Every file the app runs is in pyproject's data-files, under the folder app_root() reads."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    installed = {}
    for dest, patterns in files.items():
        assert dest == str(paths.INSTALLED_APP_DIR) or dest.startswith(f"{paths.INSTALLED_APP_DIR}/")
        for pat in patterns:
            for src in glob.glob(str(ROOT / pat)):
                installed[Path(src).relative_to(ROOT)] = Path(dest) / Path(src).name
    needed = [Path("app.py"), Path(".streamlit/config.toml"),
              *(p.relative_to(ROOT) for p in (ROOT / "pages").glob("*/*.py"))]
    for rel in needed:
        assert installed.get(rel) == paths.INSTALLED_APP_DIR / rel, rel
    assert not list((ROOT / "pages").glob("*.py"))  # nothing served without app.py's gate
    assert sysconfig.get_paths()["data"]  # where pip puts data-files


APP_CHECK = """
import sys
from streamlit.testing.v1 import AppTest
import cfviewer, cfviewer.paths as paths
at = AppTest.from_file(str(paths.app_script()), default_timeout=120).run()
assert not at.exception, [e.message for e in at.exception]
from cfviewer.ui import shell
print("RESULT", cfviewer.__file__, paths.app_root(), shell.PAGES, [t.value for t in at.title])
"""


@pytest.mark.slow
def test_the_app_runs_from_an_installed_wheel(tmp_path):
    """Build the wheel (no network: this environment's setuptools), install it into a fresh
    venv that borrows this environment's dependencies, and serve the home page from it."""
    import importlib.util
    import shutil
    import subprocess

    if not (importlib.util.find_spec("setuptools.command.bdist_wheel") or importlib.util.find_spec("wheel")):
        pytest.skip("building a wheel without network needs setuptools >= 70.1 or the wheel package")
    src = tmp_path / "src"
    for name in ("cfviewer", "pages", ".streamlit"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("app.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    run = dict(capture_output=True, text=True, timeout=600)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp_path / "dist"), str(src)], **run)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("cfviewer-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, **run)
    py = venv / "bin" / "python"
    site_dir = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, **run).stdout.strip())
    # the dependencies from this environment, as a plain path (its editable cfviewer is not used)
    (site_dir / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], **run)
    assert inst.returncode == 0, inst.stderr[-3000:]
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CFVIEWER_")}
    env["CFVIEWER_STUDY_DATA"] = str(tmp_path / "no_study")
    out = subprocess.run([str(py), "-c", APP_CHECK], cwd=tmp_path, env=env, **run)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    pkg, root, pages, titles = line.split(" ", 4)[1:]
    assert Path(pkg).is_relative_to(site_dir)  # the installed package, not this checkout
    assert Path(root) == venv / "share" / "cfviewer" and Path(pages) == venv / "share" / "cfviewer" / "pages"
    assert "cfviewer reader study" in titles
