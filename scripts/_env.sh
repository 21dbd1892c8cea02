# Sourced by scripts/run-app and scripts/run-tests: make ./.venv exist and hold the project.
# Works on a fresh machine with only Python 3.11; re-installs only when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
[ -n "$PY" ] || { echo "cfviewer: no python3 found; install Python 3.11" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  echo "cfviewer: creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.cfviewer-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "cfviewer: installing dependencies into .venv (first run only)" >&2
  python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  # The CPU build of torch first: it satisfies pyproject's range, so no CUDA build is pulled.
  if ! python -c "import torch" >/dev/null 2>&1; then
    python -m pip install -q --disable-pip-version-check "torch==2.13.0" \
      || python -m pip install -q --disable-pip-version-check "torch>=2.2"
  fi
  python -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi
