#!/usr/bin/env bash
# Install the npm packages of tests/support/npm (graphql, graphql-ws, ws) that the protocol
# tests' Node servers and clients import (tests/test_graphql_ws.py, tests/test_jsonrpc.py).
#
#   bash tests/support/npm_env.sh        # prints the path of node_modules
#
# `npm ci` from the committed package-lock.json, run only when node_modules is missing or
# older than the lock file: a second run finds it current and returns at once.
# Exit status 0: installed (or already there); 2: no npm on this machine; other: failed.
set -euo pipefail

folder="$(cd "$(dirname "$0")" && pwd)/npm"
stamp="$folder/node_modules/.package-lock.json" # written by npm ci after a complete install

if [[ -f "$stamp" && "$stamp" -nt "$folder/package-lock.json" ]]; then
    echo "$folder/node_modules"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "npm is missing: install Node.js 20+ with npm to run the graphql-ws and JSON-RPC tests." >&2
    exit 2
fi

echo "== npm ci in $folder" >&2
(cd "$folder" && npm ci --no-audit --no-fund >&2)
echo "$folder/node_modules"
