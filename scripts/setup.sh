#!/usr/bin/env bash
# One-time set-up of the course: find Python 3.12, make sure headless rendering works (Mesa EGL),
# create .venv and install the project with its dev extra. Safe to re-run; `make` re-runs it only
# when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv

is_py312() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }

find_python() {
  local candidates=()
  [ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
  [ -n "${CONDA_PREFIX:-}" ] && candidates+=("$CONDA_PREFIX/bin/python")
  candidates+=(python3.12)
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  command -v pyenv >/dev/null 2>&1 && pyenv_root="$(pyenv root)"
  for p in "$pyenv_root"/versions/3.12*/bin/python3.12; do [ -x "$p" ] && candidates+=("$p"); done
  candidates+=(python3 python)
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && is_py312 "$c"; then command -v "$c"; return 0; fi
  done
  return 1
}

# 1. System libraries for headless MuJoCo rendering (EGL through Mesa's software rasteriser).
missing=()
ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || missing+=(libegl1)
ldconfig -p 2>/dev/null | grep -q 'libOpenGL.so.0' || missing+=(libopengl0)
compgen -G '/usr/lib/*/dri/swrast_dri.so' >/dev/null || compgen -G '/usr/lib/dri/swrast_dri.so' >/dev/null \
  || missing+=(libgl1-mesa-dri)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: headless rendering needs the Debian/Ubuntu packages: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup: installing them needs root. Run:  sudo apt-get install ${missing[*]}   then re-run make." >&2
    exit 1
  fi
fi

# 2. Python 3.12 and the virtual environment.
if [ ! -x "$VENV/bin/python" ] || ! is_py312 "$VENV/bin/python"; then
  if ! PY=$(find_python); then
    echo "setup: no Python 3.12 found (LeRobot >= 0.5 needs it). Install one, e.g. 'pyenv install 3.12'," >&2
    echo "       'conda create -n vla python=3.12' (then activate it), or set PYTHON=/path/to/python3.12." >&2
    exit 1
  fi
  echo "setup: creating $VENV with $PY ($("$PY" --version))"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# 3. The project, editable, with the test tools.
echo "setup: installing vla-course and its dependencies into $VENV (a few minutes the first time)"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
touch "$VENV/.installed"
echo "setup: done"
