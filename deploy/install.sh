#!/bin/sh
# Install spampot from this source tree, as root, on a Debian or Ubuntu machine:
#
#   sh deploy/install.sh              # a sensor: the sensor, its gate, spampot health
#   sh deploy/install.sh --central    # the central server: collect, status, ingest, report…
#
# What it does, and why this way:
# - The system's own Python (/usr/bin/python3), never whichever python3 is first on PATH: the
#   systemd units and the SSH forced command must find the same interpreter for every user.
# - A virtual environment of its own, /opt/spampot: Debian 12 and Ubuntu 23.04+ mark their
#   Python "externally managed" (PEP 668), so `pip install` outside a venv is refused, and
#   Debian does not package spampot's dependencies (uvloop, DuckDB, pyarrow) in the versions
#   it needs. A venv keeps them apart from apt's packages; upgrading is running this again.
# - The command linked as /usr/local/bin/spampot: the one path that the units, the forced
#   command (`command="/usr/local/bin/spampot gate …"`) and a person's PATH all use.
# - Readable and runnable by every user (umask 022): the sensor's account and the collector's
#   login run it, not only root.
# - A sensor gets the core only: no analysis stack, and nothing to compile. The central
#   server's extra (spampot[central]: DuckDB, pyarrow, numpy, content analysis…) holds two
#   packages published as source only (py-tlsh, pycld2) that pip compiles, so --central also
#   needs a C++ compiler and the Python headers.
# - What a fresh system lacks is installed with apt-get: Debian ships python3 without `venv`
#   and `ensurepip` (package python3-venv); a minimal image may lack python3 itself; and with
#   --central, python3-dev and g++. Nothing else on the system is changed.
#   Run it again to upgrade, or with --central to turn a sensor's install into a centre's.
set -eu
umask 022

PREFIX=/opt/spampot
LINK=/usr/local/bin/spampot
PYTHON=/usr/bin/python3
SOURCE=$(cd "$(dirname "$0")/.." && pwd)

say() { printf 'spampot install: %s\n' "$*" >&2; }

ROLE=sensor
case "${1:-}" in
    "") ;;
    --central) ROLE=central ;;
    *) say "usage: sh deploy/install.sh [--central]"; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    say "run as root (it writes $PREFIX and $LINK)"
    exit 1
fi
if [ ! -f "$SOURCE/pyproject.toml" ]; then
    say "$SOURCE is not the spampot source tree"
    exit 1
fi

# What the chosen set needs from the system: the venv module always; for --central, the
# compiler and headers its source-only packages are built with.
ready() {
    [ -x "$PYTHON" ] && "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || return 1
    [ "$ROLE" = central ] || return 0
    headers=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$headers/Python.h" ] && command -v g++ >/dev/null 2>&1
}
if ! ready; then
    packages="python3 python3-venv"
    [ "$ROLE" = central ] && packages="$packages python3-dev g++"
    if ! command -v apt-get >/dev/null 2>&1; then
        say "needed: $PYTHON with the venv module (and for --central its headers and g++): $packages"
        exit 1
    fi
    say "installing $packages with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # a list of package names
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "$PYTHON is $("$PYTHON" -V 2>&1); spampot needs Python 3.11 or later"
    exit 1
fi

target=$SOURCE
[ "$ROLE" = central ] && target="$SOURCE[central]"
say "creating the virtual environment $PREFIX"
"$PYTHON" -m venv "$PREFIX"
say "installing spampot for a $ROLE and its dependencies into $PREFIX (pip)"
"$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$target"
ln -sfn "$PREFIX/bin/spampot" "$LINK"
say "installed $("$LINK" --version) as $LINK"
