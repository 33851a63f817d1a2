#!/usr/bin/env bash
# The unit suite on the lowest versions the project declares: every direct
# dependency at its floor in pyproject.toml (uv's `--resolution
# lowest-direct`), in a throwaway virtual environment. CI runs this beside
# the full suite on the newest versions; a floor that cannot work is raised
# in pyproject.toml, not worked around here.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q --disable-pip-version-check uv
work="$(mktemp -d /tmp/wsdaemon-floors.XXXXXX)"
trap 'rm -rf "$work"' EXIT

uv pip compile -q pyproject.toml --extra test --resolution lowest-direct \
    --python-version 3.11 --no-header -o "$work/floors.txt"
uv venv -q --python "$(command -v python3)" "$work/venv"
VIRTUAL_ENV="$work/venv" uv pip install -q -r "$work/floors.txt"
VIRTUAL_ENV="$work/venv" uv pip install -q --no-deps -e .
echo "floors: $(grep -iE '^(twisted|autobahn|zope-interface|websockets|txredisapi|pyjwt|prometheus-client)==' "$work/floors.txt" | tr '\n' ' ')"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit
