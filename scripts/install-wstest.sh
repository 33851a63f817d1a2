#!/usr/bin/env bash
# Install the Autobahn|Testsuite fuzzing client (`wstest`) for conformance runs.
#
# The suite is Python 2.7 only and Debian 12 has no Python 2.7, so this takes
# the interpreter from Debian 11 (bullseye) packages, fetched through the
# mirror this machine's apt already uses, unpacked under WSTEST_HOME (nothing
# is installed system-wide), then builds a 2.7 virtualenv with the suite and
# its pinned dependencies. Idempotent: exits at once if wstest already runs.
#
# Usage: scripts/install-wstest.sh            (WSTEST_HOME, default /opt/wsdaemon-wstest)
set -euo pipefail

home=${WSTEST_HOME:-/opt/wsdaemon-wstest}
root=$home/python2.7
lib=$root/usr/lib/x86_64-linux-gnu
wstest=$home/venv/bin/wstest

if [ -x "$wstest" ] && LD_LIBRARY_PATH=$lib "$wstest" -a >/dev/null 2>&1; then
    echo "wstest already installed in $home"
    exit 0
fi

mkdir -p "$home" "$root"
apt_dir=$home/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$home/debs"

# The mirror: whatever this machine's apt sources point at (deb822 or one-line format).
mirror=$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $2 ~ /\/debian$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "install-wstest: no Debian mirror in the apt sources" >&2; exit 2; }

cat > "$apt_dir/sources.list" <<SOURCES
deb $mirror bullseye main
deb $mirror-security bullseye-security main
SOURCES
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir"
    -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" -qq update
(cd "$home/debs" && apt-get "${apt_opts[@]}" -qq download \
    python2.7 python2.7-minimal python2.7-dev \
    libpython2.7 libpython2.7-minimal libpython2.7-stdlib libpython2.7-dev \
    libssl1.1 libffi7)
for deb in "$home"/debs/*.deb; do
    dpkg-deb -x "$deb" "$root"
done

python27=$root/usr/bin/python2.7
LD_LIBRARY_PATH=$lib "$python27" -c 'import ssl, zlib, ctypes'

# virtualenv 20.21 is the last release that still creates Python 2.7 environments.
python3 -m venv "$home/tools"
"$home/tools/bin/pip" install -q --disable-pip-version-check "virtualenv<20.22"
LD_LIBRARY_PATH=$lib "$home/tools/bin/virtualenv" -q -p "$python27" "$home/venv"

# The suite's sdist lists no dependencies; these are the versions it works with.
cat > "$home/requirements.txt" <<'REQUIREMENTS'
setuptools==44.0.0
six==1.16.0
txaio==2.1.0
incremental==16.10.1
zope.interface==4.6.0
Twisted==19.10.0
cryptography==3.3.2
pyOpenSSL==19.1.0
service_identity==18.1.0
markupsafe==1.1.1
jinja2==2.11.3
Werkzeug==1.0.1
klein==17.10.0
unittest2==1.1.0
autobahn[accelerate,twisted]==0.10.9
autobahntestsuite==25.10.1
REQUIREMENTS
# C extensions must find the unpacked Python 2.7 headers.
LD_LIBRARY_PATH=$lib CFLAGS="-I$root/usr/include/python2.7 -I$root/usr/include" \
    "$home/venv/bin/pip" install -q --disable-pip-version-check -r "$home/requirements.txt" 2>&1 \
    | grep -v -e "DEPRECATION" -e "WARNING: Location" || true
LD_LIBRARY_PATH=$lib "$wstest" -a >/dev/null
echo "wstest installed in $home"
