"""Where things live: the project root, study data, the demo study, the database URL."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent


def study_data_dir() -> Path:
    """`CFVIEWER_STUDY_DATA` or ./study_data next to the package."""
    return Path(os.environ.get("CFVIEWER_STUDY_DATA", PROJECT_ROOT / "study_data"))


def demo_dir() -> Path:
    return study_data_dir() / "demo"


def demo_bundle_dir() -> Path:
    """The demo model bundle (classifier + autoencoder + metadata), committed to git."""
    return demo_dir() / "bundle"
