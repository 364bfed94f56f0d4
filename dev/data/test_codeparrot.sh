#!/usr/bin/env bash
# dev/data/test_codeparrot.sh: `prepare.sh --codeparrot` on small hand-made exports (~10 s): the
# selection is datasets' shuffle(seed=0).select(range(k)) (numpy's default_rng(0) permutation,
# computed here on its own), train and val shards come from their own exports, and bad input ends
# with one error line. Last line: "N passed, M failed".
set -u
cd "$(dirname "$0")/../.." || exit 1
PYTHON=${PYTHON:-/usr/bin/python3}
W=out/test_codeparrot
rm -rf "$W"
source tests/test_lib.sh

$PYTHON - "$W" <<'EOF'
import gzip, json, sys
w = sys.argv[1]
for name, n in (("train", 60), ("valid", 12)):
    with gzip.open(f"{w}/{name}.jsonl.gz", "wt") as f:
        for i in range(n):
            body = "\n".join(f"def {name}_{i}_{j}(x):\n    return x * {j} + {i}" for j in range(30))
            f.write(json.dumps({"repo_name": "r", "path": f"{name}{i}.py", "content": f"# {name} row {i}\n{body}"}) + "\n")
EOF
bash dev/data/prepare.sh --codeparrot "$W/train.jsonl.gz" "$W/valid.jsonl.gz" --out "$W/data" --train-files 50 \
    --val-files 8 -q > "$W/run.log" 2>&1
check "prepare.sh --codeparrot exits 0" test $? -eq 0
selection_ok() {
    $PYTHON - "$W" <<'EOF'
import json, sys
import numpy as np
w = sys.argv[1]
ok = True
for split, src, n, k in (("train", "train", 60, 50), ("val", "valid", 12, 8)):
    got = [json.loads(l)["content"].split("\n")[0] for l in open(f"{w}/data/codeparrot_select/codeparrot_{split}_select.jsonl")]
    want = [f"# {src} row {i}" for i in np.random.default_rng(0).permutation(n)[:k]]
    ok &= got == want
    print(f"     {split}: {got[:3]} ... ({len(got)} files)")
sys.exit(0 if ok else 1)
EOF
}
check "the selected files are rows permutation[:k] of default_rng(0), in that order" selection_ok
shards_ok() {
    $PYTHON - "$W/data" <<'EOF'
import json, sys
d = sys.argv[1]
tokens = lambda f: (len(open(f"{d}/{f}", "rb").read()) - 1024) // 2

train, val = tokens("codeparrot_train_000000.bin"), tokens("codeparrot_val_000000.bin")
print(f"     train shard {train} tokens, val shard {val} tokens")
sys.exit(0 if train > 0 and val > 0 and train % 128 == 0 and val % 128 == 0 and val < train else 1)
EOF
}
check "codeparrot_train from the train export, codeparrot_val from the valid export, whole 128-token chunks" shards_ok
check "a row count other than the published split is reported" grep -q "has 60 rows, the published split 606720" "$W/run.log"
bash dev/data/prepare.sh --codeparrot "$W/missing.jsonl" "$W/valid.jsonl.gz" --out "$W/d2" > "$W/bad.log" 2>&1
check "a missing export: exit 1, one error line naming it" \
    test $? -eq 1 -a "$(grep -c 'error: cannot read .*missing.jsonl' "$W/bad.log")" = 1
bash dev/data/prepare.sh --codeparrot "$W/train.jsonl.gz" "$W/valid.jsonl.gz" --out "$W/d3" --train-files 61 > "$W/big.log" 2>&1
check "asking for more files than the export has: exit 1 with the reason" test $? -eq 1 -a -n "$(grep 'asked for 61 files, the export has 60' "$W/big.log")"
test_summary
