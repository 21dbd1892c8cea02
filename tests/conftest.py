"""Shared fixtures. Tests that need ../shared/data skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CFVIEWER_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Two xdist workers on two cores: one torch thread each keeps them from fighting.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real radiographs exist only for developers and CI)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest runs a page as sys.modules['__main__'] and leaves it there; a later
    multiprocessing 'spawn' child would then re-run that page as its main module (and die
    before running its target). Put the real __main__ back after every test."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


@pytest.fixture(autouse=True)
def _fresh_sign_in_throttle():
    """The app's sign-in throttle lives in the process (cfviewer.ui.auth.THROTTLE) and AppTest
    sessions share one id: start every test with no failed sign-ins on record."""
    import sys

    yield
    auth = sys.modules.get("cfviewer.ui.auth")
    if auth is not None:
        auth.THROTTLE.reset()


@pytest.fixture()
def study(tmp_path):
    """(db, root) of an empty study 's' in tmp_path (the import tests' study)."""
    from test_study_support import empty_study

    db, root = empty_study(tmp_path)
    yield db, root
    db.dispose()
