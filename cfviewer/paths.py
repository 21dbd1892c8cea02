"""Where things live: the project root, the web app (app.py and pages/), study data, the
demo study, the database URL."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from pathlib import Path

from cfviewer.errors import CfviewerError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent

APP_SCRIPT = "app.py"
INSTALLED_APP_DIR = Path("share") / "cfviewer"
"""Where a wheel installs the web app, under the installation's data prefix (pyproject.toml's
``[tool.setuptools.data-files]``: app.py, pages/*/ and .streamlit/config.toml)."""


class AppNotFoundError(CfviewerError, FileNotFoundError):
    """The web app's files (app.py, pages/) are not where cfviewer looks for them."""


def app_root() -> Path:
    """The folder holding the web app: ``app.py`` (what `streamlit run` serves) and ``pages/``.

    The first of: ``CFVIEWER_APP_ROOT``; the source checkout (app.py beside the package, also
    for an editable install); the copy a wheel installed (``<data prefix>/share/cfviewer``, for
    the prefix of this environment, then sys.prefix, then the user base of ``pip install
    --user``). Library code finds the pages through this, never from its own ``__file__``.
    Raises AppNotFoundError (a FileNotFoundError) naming the places looked at when none has
    app.py."""
    env = os.environ.get("CFVIEWER_APP_ROOT")
    if env:
        return Path(env)
    candidates = [PROJECT_ROOT]
    for prefix in (sysconfig.get_paths().get("data"), sys.prefix, site.getuserbase()):
        if prefix and (cand := Path(prefix) / INSTALLED_APP_DIR) not in candidates:
            candidates.append(cand)
    for cand in candidates:
        if (cand / APP_SCRIPT).is_file():
            return cand
    raise AppNotFoundError(
        f"the cfviewer web app ({APP_SCRIPT} and pages/) is in none of {', '.join(map(str, candidates))}; "
        "reinstall cfviewer, or set CFVIEWER_APP_ROOT to the folder that holds app.py")


def app_script() -> Path:
    """The web app's entry point, ``app_root() / "app.py"``. From an installed wheel:
    ``cd "$(dirname "$(python -m cfviewer.paths)")" && streamlit run app.py`` (in that folder
    Streamlit also reads the app's .streamlit/config.toml)."""
    return app_root() / APP_SCRIPT


def study_data_dir() -> Path:
    """`CFVIEWER_STUDY_DATA` or ./study_data next to the package."""
    return Path(os.environ.get("CFVIEWER_STUDY_DATA", PROJECT_ROOT / "study_data"))


def demo_dir() -> Path:
    return study_data_dir() / "demo"


def demo_bundle_dir() -> Path:
    """The demo model bundle (classifier + autoencoder + metadata), committed to git."""
    return demo_dir() / "bundle"


def demo_attrinet_dir() -> Path:
    """The demo Attri-Net bundle (the inherently interpretable model on the demo bundle's task,
    `cfviewer train-attrinet`), committed to git."""
    return demo_dir() / "attrinet"


if __name__ == "__main__":  # `python -m cfviewer.paths`: the app script to pass to streamlit run
    print(app_script())


def work_cache_dir(kind: str, folder: str | os.PathLike | None) -> Path:
    """The default work directory (checkpoints, phantom caches) of a ``kind`` of training for
    the bundle folder ``folder``: ``$XDG_CACHE_HOME/cfviewer/<kind>/<12 hex digits of the
    folder's resolved path>`` (``"in-memory"`` hashed for a bundle without a folder)."""
    import hashlib

    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cfviewer" / kind
    key = str(Path(folder).resolve()) if folder is not None else "in-memory"
    return root / hashlib.sha256(key.encode()).hexdigest()[:12]
