#!/usr/bin/env bash
# deps.sh: installs the pinned js-tiktoken into dev/data/node_modules with `npm ci` (from
# package-lock.json), unless the installed tree already matches the lock file.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stamp="$here/node_modules/.lock-installed"
if ! cmp -s "$here/package-lock.json" "$stamp" 2>/dev/null; then
  command -v npm >/dev/null || { echo "deps: error: npm not found (apt-get install npm, or Node.js 18+)" >&2; exit 1; }
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2 \
    || { echo "deps: error: 'npm ci' failed in $here" >&2; exit 1; }
  cp "$here/package-lock.json" "$stamp"
fi
