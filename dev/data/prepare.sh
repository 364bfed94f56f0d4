#!/usr/bin/env bash
# prepare.sh [options]: builds the token shards (see README.md; `prepare.sh --help` for options).
# Installs the pinned tokenizer first if needed (npm ci), then runs prepare.js.
#
# prepare.sh --codeparrot TRAIN.jsonl[.gz] VALID.jsonl[.gz] [--out DIR] [--train-files N]
#            [--val-files N] [prepare.js options]: the paper's CodeParrot selection (README.md,
#   "CodeParrot"): codeparrot_select.py keeps the files that datasets' shuffle(seed=0).select()
#   kept (600,000 of codeparrot-ds-train, 2,000 of codeparrot-ds-valid), then prepare.js
#   tokenizes each selection whole (no hash split, no size or line filter, as the authors):
#   DIR/codeparrot_train_*.bin from the train export, DIR/codeparrot_val_000000.bin from the
#   valid export.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$here/deps.sh"
if [ "${1:-}" != "--codeparrot" ]; then exec node "$here/prepare.js" "$@"; fi

die() { echo "prepare: error: $*" >&2; exit 1; }
[ $# -ge 3 ] || die "--codeparrot needs TRAIN.jsonl[.gz] VALID.jsonl[.gz] (exports of huggingface-course/codeparrot-ds-train and -valid)"
train=$2 valid=$3
shift 3
out=data train_files=600000 val_files=2000 rest=()
while [ $# -gt 0 ]; do
    case $1 in
        --out) [ $# -ge 2 ] || die "--out needs a folder"; out=$2; shift 2 ;;
        --train-files) [ $# -ge 2 ] || die "--train-files needs a number"; train_files=$2; shift 2 ;;
        --val-files) [ $# -ge 2 ] || die "--val-files needs a number"; val_files=$2; shift 2 ;;
        --source|--name|--val-frac|--sample) die "$1 cannot be combined with --codeparrot" ;;
        *) rest+=("$1"); shift ;;
    esac
done
sel=$out/codeparrot_select
mkdir -p "$out"
${PYTHON:-/usr/bin/python3} "$here/codeparrot_select.py" "$train" "$valid" "$sel" \
    --train-files "$train_files" --val-files "$val_files"
common=(--val-frac 0 --max-line 0 --max-bytes 0 --out "$out" ${rest[@]+"${rest[@]}"})
node "$here/prepare.js" --source "jsonl:$sel/codeparrot_train_select.jsonl" --name codeparrot "${common[@]}"
# the valid selection as one dataset of its own, whose "train" shard is our validation shard
node "$here/prepare.js" --source "jsonl:$sel/codeparrot_val_select.jsonl" --name codeparrot-valsel "${common[@]}"
[ ! -e "$out/codeparrot-valsel_train_000001.bin" ] || die "the validation selection needs more than one shard (raise --shard-tokens)"
cp "$out/codeparrot-valsel_train_000000.bin" "$out/codeparrot_val_000000.bin"
echo "prepare: codeparrot: $out/codeparrot_train_*.bin ($train_files files), $out/codeparrot_val_000000.bin ($val_files files)"
