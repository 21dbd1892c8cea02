"""Which study folder and database the app serves.

- study folder: ``CFVIEWER_STUDY_DIR`` or the demo study (``cfviewer.paths.demo_dir()``);
- database: ``CFVIEWER_DB_URL``, else ``db_url`` in ``<study folder>/study.json``, else
  ``<study folder>/study.db`` (the study engine's rules: ``cfviewer.study.db.resolve_url``);
- study: ``CFVIEWER_STUDY`` (a name) or the only study in the database; a reader's token
  names its study by itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from cfviewer import paths
from cfviewer.errors import CfviewerError

ENV_STUDY_DIR = "CFVIEWER_STUDY_DIR"
ENV_STUDY_NAME = "CFVIEWER_STUDY"


class NoStudyError(CfviewerError):
    """There is no study database yet where the app looks for one."""


@dataclass(frozen=True)
class AppContext:
    study_dir: Path
    db_url: str
    study_name: str | None
    is_demo: bool

    @property
    def sqlite_path(self) -> Path | None:
        u = make_url(self.db_url)
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
            return Path(u.database)
        return None

    def database_exists(self) -> bool:
        """False only when the database is a SQLite file that does not exist yet (other
        backends are assumed to exist; opening them reports a clear error otherwise)."""
        p = self.sqlite_path
        return p is None or p.is_file()

    def empty_state_message(self, show_path: bool = True) -> str:
        """What to do when there is no database yet; `show_path=False` for visitors who have
        not signed in (no server paths: the server's log names the place)."""
        where = f" at {self.sqlite_path or self.db_url}" if show_path else " yet"
        if self.is_demo:
            return (f"The demo study has not been built yet (no database{where}). "
                    "Build it with `cfviewer demo` (add `--simulate-readers` for example "
                    "answers), then reload this page.")
        return (f"No study database{where}. Create the study with `cfviewer study create` "
                f"or point {ENV_STUDY_DIR} / CFVIEWER_DB_URL at an existing one, then reload.")


def app_context() -> AppContext:
    """The study folder, database URL and study name from the environment (see module doc)."""
    from cfviewer.study.db import resolve_url

    custom = os.environ.get(ENV_STUDY_DIR)
    study_dir = (Path(custom).expanduser() if custom else paths.demo_dir()).resolve()
    return AppContext(study_dir=study_dir, db_url=resolve_url(None, study_dir),
                      study_name=os.environ.get(ENV_STUDY_NAME) or None, is_demo=not custom)
