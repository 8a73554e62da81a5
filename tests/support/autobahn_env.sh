#!/usr/bin/env bash
# Install Autobahn|Testsuite (wstest, Python 2.7 only) into a cached virtualenv.
#
#   bash tests/support/autobahn_env.sh        # prints the path of wstest
#
# The virtualenv lives in $WSREPLAY_AUTOBAHN_HOME (default ~/.cache/wsreplay/autobahn-py27);
# a second run finds it complete and returns at once. Python 2.7 is taken from
# $WSREPLAY_PYTHON27, else python2.7 on PATH, else pyenv's 2.7.x.
# Exit status 0: installed (or already there); 2: no Python 2.7 on this machine; other: failed.
set -euo pipefail

AUTOBAHN_VERSION=25.10.1          # pins Twisted 19.10, autobahn 0.10.9 and the rest for 2.7
VIRTUALENV_SPEC='virtualenv<20.22' # the last virtualenv releases that run on Python 2.7
home=${WSREPLAY_AUTOBAHN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/wsreplay/autobahn-py27}
stamp="$home/installed-autobahntestsuite-$AUTOBAHN_VERSION"

if [[ -f "$stamp" && -x "$home/venv/bin/wstest" ]]; then
    echo "$home/venv/bin/wstest"
    exit 0
fi

find_python27() {
    local candidate
    for candidate in "${WSREPLAY_PYTHON27:-}" python2.7 "$(pyenv root 2>/dev/null)"/versions/2.7.*/bin/python2.7; do
        if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if ! python27=$(find_python27); then
    echo "Autobahn|Testsuite needs Python 2.7, which this machine does not have:" \
        "install it (pyenv install 2.7.18) or set WSREPLAY_PYTHON27 to its interpreter." >&2
    exit 2
fi

echo "== installing autobahntestsuite $AUTOBAHN_VERSION with $python27 into $home" >&2
rm -rf "$home/venv" "$home/bootstrap" "$stamp"
mkdir -p "$home"
quiet_pip() {
    # pip 19/20 on Python 2.7 warn about 2.7's end of life and about find-links folders that
    # hold no Python 2 wheels; everything else, errors included, is shown.
    local status=0 log
    log=$(mktemp)
    "$@" --quiet --disable-pip-version-check --no-warn-script-location >"$log" 2>&1 || status=$?
    grep -vE 'DEPRECATION: Python 2.7|is ignored: it is neither a file nor a directory' "$log" >&2 || true
    rm -f "$log"
    return "$status"
}
if ! "$python27" -m pip --version >/dev/null 2>&1; then
    "$python27" -m ensurepip --user >&2
fi
quiet_pip "$python27" -m pip install --target "$home/bootstrap" "$VIRTUALENV_SPEC"
PYTHONPATH="$home/bootstrap" "$python27" -m virtualenv --quiet "$home/venv" >&2
quiet_pip "$home/venv/bin/python" -m pip install "autobahntestsuite==$AUTOBAHN_VERSION"
"$home/venv/bin/wstest" --autobahnversion >&2
touch "$stamp"
echo "$home/venv/bin/wstest"
