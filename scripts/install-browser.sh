#!/usr/bin/env bash
# Installs what the browser tests need: Debian's chromium (via apt, only when missing) and the
# Python Playwright client into the project venv. Never runs `playwright install`: the tests drive
# /usr/bin/chromium, and nothing is downloaded from outside the package registries.
set -euo pipefail

VENV="${VENV:-.venv}"
CHROMIUM=/usr/bin/chromium

if [[ ! -x "$CHROMIUM" ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "install-browser: $CHROMIUM is missing and installing it needs root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi

if ! "$VENV/bin/python" -c "import playwright" 2>/dev/null; then
    "$VENV/bin/pip" install -q "playwright>=1.40"
fi

"$CHROMIUM" --version 2>/dev/null | head -n 1
"$VENV/bin/python" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
