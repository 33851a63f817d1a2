#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (as root):
# the package with its test extras (editable), Chromium and chromedriver for
# the browser test, redis-server and HAProxy for the several-daemons tests,
# and the Autobahn|Testsuite for the conformance test.
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

# redis-server and HAProxy, for the several-daemons tests (the tests start
# their own servers on free ports; nothing is left running).
if ! command -v redis-server >/dev/null || ! command -v haproxy >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server haproxy >/dev/null
fi
# Debian starts the packaged services; the tests need neither.
(service redis-server stop || true) >/dev/null 2>&1
(service haproxy stop || true) >/dev/null 2>&1

# systemd-analyze, to verify the unit files.
if ! command -v systemd-analyze >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq systemd >/dev/null
fi

# axe-core (npm), for the browser tests' accessibility checks; they look for
# it in WSDAEMON_NPM_HOME (default /opt/wsdaemon-npm).
npm_home=${WSDAEMON_NPM_HOME:-/opt/wsdaemon-npm}
if [ ! -f "$npm_home/node_modules/axe-core/axe.min.js" ]; then
    if ! command -v npm >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq npm >/dev/null
    fi
    npm install --silent --no-audit --no-fund --prefix "$npm_home" axe-core@4 >/dev/null
fi

bash scripts/install-wstest.sh
