#!/usr/bin/env bash
# scripts/paper/pack_gpu_data.sh: packs the start of the default corpus for a GPU machine that
# cannot download or build it (the device tool of this workplace: no network, and a working tree
# of at most 64 MiB). Token shards of Python code compress ~3.7x with xz, so the 65.5M tokens that
# `run.sh small` trains on travel in ~36 MB.
#
#   bash scripts/paper/pack_gpu_data.sh [TOKENS]
#
# TOKENS: training tokens to keep (default 65,600,000: the small scale's 2,000 steps x 32,768
# tokens, plus the one extra token a T+1 window needs, and a margin). The corpus's shards are
# already shuffled in 128-token chunks, so their start is a fair sample. Writes .gpudata/ (ignored
# by git): pycode_train_000000.bin.xz (a valid llm.c shard of TOKENS tokens once unpacked),
# pycode_val_000000.bin.xz (the whole validation set), gpt2_tokenizer.bin. Needs `make data` first.
# scripts/paper/gpu_small.sh unpacks them on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOKENS=${1:-65600000}
OUT_DIR=.gpudata
TRAIN=data/pycode_train_000000.bin
VAL=data/pycode_val_000000.bin
for f in $TRAIN $VAL data/gpt2_tokenizer.bin; do
    [ -f $f ] || { echo "pack_gpu_data.sh: error: $f is missing: run make data first" >&2; exit 1; }
done
have=$((($(stat -c %s $TRAIN) - 1024) / 2))
if [ "$TOKENS" -gt "$have" ]; then
    echo "pack_gpu_data.sh: error: $TRAIN holds $have tokens, fewer than the $TOKENS asked for" >&2
    exit 1
fi
mkdir -p $OUT_DIR
# a new header with the kept count (magic 20240520, version 1, count), then the first TOKENS tokens
${PYTHON:-/usr/bin/python3} - "$TRAIN" "$TOKENS" <<'EOF' | xz -6 -T2 >$OUT_DIR/pycode_train_000000.bin.xz.tmp
import struct, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    header = list(struct.unpack("<256i", f.read(1024)))
    assert header[0] == 20240520, f"{path}: not a token shard"
    header[2] = n
    out = sys.stdout.buffer
    out.write(struct.pack("<256i", *header))
    left = 2 * n
    while left > 0:
        chunk = f.read(min(left, 1 << 24))
        assert chunk, f"{path}: shorter than its header says"
        out.write(chunk)
        left -= len(chunk)
EOF
mv $OUT_DIR/pycode_train_000000.bin.xz.tmp $OUT_DIR/pycode_train_000000.bin.xz
xz -6 -T2 -c $VAL >$OUT_DIR/pycode_val_000000.bin.xz.tmp
mv $OUT_DIR/pycode_val_000000.bin.xz.tmp $OUT_DIR/pycode_val_000000.bin.xz
cp data/gpt2_tokenizer.bin $OUT_DIR/
du -b $OUT_DIR/* | awk '{printf "%-40s %6.1f MB\n", $2, $1 / 1e6}'
echo "pack_gpu_data.sh: $TOKENS training tokens packed in $OUT_DIR/ (carry it to the GPU machine)"
