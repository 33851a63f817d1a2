#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (as root):
# the package with its test extras (editable), Chromium and chromedriver for
# the browser test, and the Autobahn|Testsuite for the conformance test.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# Twisted writes its plugin cache on first scan; do it now, once.
python3 -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# systemd-analyze, to verify the unit files.
if ! command -v systemd-analyze >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq systemd >/dev/null
fi

bash scripts/install-wstest.sh
