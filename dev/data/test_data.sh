#!/usr/bin/env bash
# test_data.sh: the data-pipeline tests, in sample mode (local work only, ~10 s after npm ci).
# Last line: "N passed, M failed"; exit status non-zero if any failed.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! bash "$here/deps.sh"; then
  echo "0 passed, 1 failed"
  exit 1
fi
log=$(mktemp)
node "$here/test_data.js" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# If the test runner died before its closing line, close with a failure.
if ! tail -n 1 "$log" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
  echo "0 passed, 1 failed"
  rc=1
fi
rm -f "$log"
exit "$rc"
