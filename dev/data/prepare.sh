#!/usr/bin/env bash
# prepare.sh [options]: builds the token shards (see README.md; `prepare.sh --help` for options).
# Installs the pinned tokenizer first if needed (npm ci), then runs prepare.js.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$here/deps.sh"
exec node "$here/prepare.js" "$@"
