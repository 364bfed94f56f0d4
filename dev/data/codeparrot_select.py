"""dev/data/codeparrot_select.py: the paper's CodeParrot selection, from local JSONL exports.

The authors' run_clm.py (Nandan91/relu-revival-normfree; scripts/experiments/*.sh pass
num_token_mult=6) loads huggingface-course/codeparrot-ds-train (split "train", 606,720 files)
and huggingface-course/codeparrot-ds-valid (split "validation", 3,322 files), and keeps

    train: ds_train.shuffle(seed=0).select(range(600000))
    valid: ds_valid.shuffle(seed=0).select(range(2000))

Hugging Face datasets' shuffle(seed=s) is the permutation numpy.random.default_rng(s)
.permutation(n) of the rows, and select(range(k)) keeps its first k entries, in that order.
This script applies exactly that to an export of each split that keeps the datasets' row order
(one JSON object per line with a string field "content", e.g. from
`ds.to_json("codeparrot-ds-train.jsonl")`), and writes the selected records, in the selected
order, as {"content": ...} lines that prepare.sh then tokenizes:

    /usr/bin/python3 dev/data/codeparrot_select.py TRAIN.jsonl[.gz] VALID.jsonl[.gz] OUTDIR \
        [--train-files 600000] [--val-files 2000] [--seed 0]
    -> OUTDIR/codeparrot_train_select.jsonl, OUTDIR/codeparrot_val_select.jsonl,
       OUTDIR/codeparrot_select.json (row counts, the first selected rows, sha256 of each output)

A row count other than the published one (606,720 / 3,322) is reported: the selection is then
not the paper's, because the permutation depends on n.
"""
import argparse
import gzip
import hashlib
import json
import os
import sys

import numpy as np

PUBLISHED_ROWS = {"train": 606720, "val": 3322}


def fail(msg):
    print(f"codeparrot_select: error: {msg}", file=sys.stderr)
    sys.exit(1)


def read_contents(path):
    """The "content" field of every line, in file order."""
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    fail(f"{path}:{lineno} is not JSON (one object per line expected)")
                if not isinstance(rec, dict) or not isinstance(rec.get("content"), str):
                    fail(f"{path}:{lineno} has no string field \"content\"")
                out.append(rec["content"])
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e} (export the split with ds.to_json(...))")
    except EOFError:
        fail(f"{path} is a truncated gzip file")
    return out


def select(contents, k, seed):
    """Rows permutation[:k] of numpy.random.default_rng(seed).permutation(n), as datasets'
    shuffle(seed).select(range(k)); returns (indices, records)."""
    if k > len(contents):
        fail(f"asked for {k} files, the export has {len(contents)}")
    idx = np.random.default_rng(seed).permutation(len(contents))[:k]
    return idx, [contents[i] for i in idx]


def main():
    p = argparse.ArgumentParser(description="The paper's CodeParrot selection from local JSONL exports.")
    p.add_argument("train")
    p.add_argument("valid")
    p.add_argument("outdir")
    p.add_argument("--train-files", type=int, default=600000)
    p.add_argument("--val-files", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.train_files < 1 or a.val_files < 1:
        fail("--train-files and --val-files must be positive")
    os.makedirs(a.outdir, exist_ok=True)
    summary = {"seed": a.seed}
    for split, path, k in (("train", a.train, a.train_files), ("val", a.valid, a.val_files)):
        contents = read_contents(path)
        if len(contents) != PUBLISHED_ROWS[split]:
            print(f"codeparrot_select: warning: {path} has {len(contents)} rows, the published split "
                  f"{PUBLISHED_ROWS[split]}: this is not the paper's selection", file=sys.stderr)
        idx, recs = select(contents, k, a.seed)
        out = os.path.join(a.outdir, f"codeparrot_{split}_select.jsonl")
        h = hashlib.sha256()
        with open(out + ".tmp", "w", encoding="utf-8") as f:
            for r in recs:
                line = json.dumps({"content": r}, ensure_ascii=False) + "\n"
                f.write(line)
                h.update(line.encode("utf-8"))
        os.replace(out + ".tmp", out)
        summary[split] = {"export": path, "rows": len(contents), "selected": k,
                          "first_rows": [int(i) for i in idx[:5]], "output": out, "sha256": h.hexdigest()}
        print(f"{split}: {k} of {len(contents)} rows (first: {summary[split]['first_rows']}) -> {out}")
    with open(os.path.join(a.outdir, "codeparrot_select.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
