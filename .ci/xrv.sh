#!/usr/bin/env bash
# CI step for the optional torchxrayvision adapter (cfviewer/models/xrv.py).
#
# torchxrayvision needs torchvision, which on this machine only exists for torch 2.14.1 (a
# CUDA build, ~5.5 GB, that runs on the CPU). The main venv (.venv, torch 2.13 CPU) must not
# get it, so this step keeps a second venv, .venv-xrv, and runs tests/test_xrv_adapter.py there.
#
# Idempotent: the venv is created once; the editable install is redone only when
# pyproject.toml changed (its hash is kept in .venv-xrv/.cfviewer-xrv-stamp).
# When the torch 2.14.1 / torchvision 0.29.1 wheels cannot be installed, it prints
# "skipped: <reason>" and exits 0. Any other failure (install of cfviewer[test,xrv], tests)
# exits non-zero.
#
# Environment: PYTHON (default python3.11), XRV_VENV (default .venv-xrv).
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3.11}"
VENV="${XRV_VENV:-.venv-xrv}"
STAMP="$VENV/.cfviewer-xrv-stamp"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
NICE=(nice -n 15)
t0=$(date +%s)

skip() {
  echo "skipped: $*"
  exit 0
}

if ! command -v "$PY" >/dev/null 2>&1; then
  skip "$PY not found (set PYTHON=... to a Python 3.10+ interpreter)"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "xrv: creating $VENV with $PY"
  "$PY" -m venv "$VENV" || skip "could not create the venv $VENV with $PY"
fi

# 1. torch 2.14.1 + torchvision 0.29.1 (skip cleanly when they are not installable here).
if ! "$VENV/bin/python" - "${TORCH_PINS[@]}" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
want = dict(p.split("==") for p in sys.argv[1:])
sys.exit(0 if all(version(n).split("+")[0] == v for n, v in want.items()) else 1)
EOF
then
  echo "xrv: installing ${TORCH_PINS[*]} into $VENV (large; one time)"
  if ! "${NICE[@]}" "$VENV/bin/python" -m pip install -q "${TORCH_PINS[@]}"; then
    skip "the ${TORCH_PINS[*]} wheels cannot be installed on this machine (torchxrayvision needs torchvision)"
  fi
fi

# 2. cfviewer itself with the test and xrv extras (redone when pyproject.toml changes).
want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want_stamp" ]; then
  echo "xrv: installing -e '.[test,xrv]' into $VENV"
  if ! "${NICE[@]}" "$VENV/bin/python" -m pip install -q -e ".[test,xrv]"; then
    echo "xrv: pip install -e '.[test,xrv]' failed in $VENV" >&2
    exit 1
  fi
  echo "$want_stamp" >"$STAMP"
fi
t1=$(date +%s)
echo "xrv: venv ready in $((t1 - t0)) s ($(du -sh "$VENV" 2>/dev/null | cut -f1))"

# 3. The adapter tests.
"${NICE[@]}" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_xrv_adapter.py
rc=$?
echo "xrv: tests took $(($(date +%s) - t1)) s"
exit $rc
