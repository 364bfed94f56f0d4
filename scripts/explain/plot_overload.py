#!/usr/bin/env python3
"""plot_overload.py: the figure and the table of doc/entropic-overload.md, from the runs of
scripts/explain/overload.sh.

    /usr/bin/python3 scripts/explain/plot_overload.py OUT

Reads OUT/<run>/diag.tsv, entropy.tsv, main.log and run.info for every finished run in OUT
(a folder with run.info); writes OUT/overload.png and OUT/overload.md (per layer, at the first and last
logged step: residual RMS, score std and max, FFN pre-activation RMS and negative share, mean
head entropy and its share of the maximum M = ln(T!)/T; the init-scale prediction of the score
std beside the measured one).
"""
import math
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUN_ORDER = ["ln-gelu", "ln-relu", "none-gelu", "none-relu", "none-lrelu0.1"]
STYLE = {"ln-gelu": ("tab:blue", "-"), "ln-relu": ("tab:green", "-"), "none-gelu": ("tab:red", "--"),
         "none-relu": ("tab:orange", "--"), "none-lrelu0.1": ("tab:purple", ":")}
INIT_STD = 0.02  # llm.c's weight init (train_gpt2.cpp, gpt2_build_from_random)


def read_tsv(path):
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        return [dict(zip(header, map(float, line.split("\t")))) for line in f if line.strip()]


def read_run(folder):
    info = dict(line.rstrip("\n").split("=", 1) for line in open(os.path.join(folder, "run.info")) if "=" in line)
    T, C = int(info["T"]), int(info["C"])
    diag = {}                                   # step -> layer -> row
    for r in read_tsv(os.path.join(folder, "diag.tsv")):
        diag.setdefault(int(r["step"]), {})[int(r["layer"])] = r
    ent = {}                                    # step -> layer -> [head entropies]
    for r in read_tsv(os.path.join(folder, "entropy.tsv")):
        ent.setdefault(int(r["step"]), {}).setdefault(int(r["layer"]), []).append(r["entropy"])
    val = []
    for line in open(os.path.join(folder, "main.log")):
        if " tel:" in line:
            s, v = line.split()
            val.append((int(s[2:]), float(v[4:])))
    return {"T": T, "C": C, "diag": diag, "ent": ent, "val": val,
            "M": sum(math.log(t) for t in range(1, T + 1)) / T}


def mean_entropy(run, step, layer):
    h = run["ent"][step][layer]
    return sum(h) / len(h)


def table(runs):
    out = ["# Entropic overload: the measurements", "",
           "Made by `scripts/explain/plot_overload.py` from the runs of `scripts/explain/overload.sh`.",
           "M = ln(T!)/T is the largest mean entropy a causal row can have (uniform attention).",
           "pred. std: the init-scale prediction of the score std, 0.02^2 * C * r^2 with r the RMS of",
           "the attention's input (1 after LayerNorm, resid_rms without); meaningful at step 0 only.", ""]
    # the summary: every run side by side at its last logged step
    L = max(len(r["diag"][max(r["diag"])]) for r in runs.values())
    out += ["## Summary: last logged step, per layer", "",
            "| run | val loss | " + " | ".join(f"layer {l}: H/M, score_std, resid_rms" for l in range(L)) + " |",
            "|---|---:|" + "---:|" * L]
    for name, run in runs.items():
        last = max(run["diag"])
        cells = []
        for l in range(L):
            d = run["diag"][last].get(l)
            cells.append("-" if d is None else
                         f"{mean_entropy(run, last, l) / run['M']:.3f}, {d['score_std']:.3g}, {d['resid_rms']:.3g}")
        val = f"{run['val'][-1][1]:.3f}" if run["val"] else "-"
        out.append(f"| {name} (step {last}) | {val} | " + " | ".join(cells) + " |")
    out.append("")
    for name, run in runs.items():
        steps = sorted(run["diag"])
        last_val = run["val"][-1] if run["val"] else (None, float("nan"))
        out += [f"## {name}", "", f"val loss {last_val[1]:.4f} at step {last_val[0]}; T = {run['T']}, "
                f"M = {run['M']:.4f} nats", "",
                "| step | layer | resid_rms | pred. std | score_std | score_max | ffn_rms | ffn_neg | entropy | H / M |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for step in (steps[0], steps[-1]):
            for layer in sorted(run["diag"][step]):
                d = run["diag"][step][layer]
                r_in = 1.0 if name.startswith("ln") else d["resid_rms"]
                pred = f"{INIT_STD ** 2 * run['C'] * r_in ** 2:.3g}" if step == steps[0] else "-"
                h = mean_entropy(run, step, layer)
                out.append(f"| {step} | {layer} | {d['resid_rms']:.4g} | {pred} | {d['score_std']:.3g} | "
                           f"{d['score_max']:.3g} | {d['ffn_rms']:.3g} | {d['ffn_neg']:.3f} | {h:.4f} | {h / run['M']:.4f} |")
        out.append("")
    return "\n".join(out) + "\n"


def figure(runs, path):
    fig, ax = plt.subplots(2, 3, figsize=(14, 7.5))
    for name, run in runs.items():
        color, ls = STYLE.get(name, ("black", "-"))
        steps = sorted(run["diag"])
        last = steps[-1]
        layers = sorted(run["diag"][last])
        col = lambda step, key: [run["diag"][step][l][key] for l in layers]  # noqa: E731
        ax[0, 0].plot(layers, col(last, "resid_rms"), ls, color=color, marker="o", label=name)
        ax[0, 1].plot(layers, col(last, "score_std"), ls, color=color, marker="o", label=name)
        ax[0, 2].plot(layers, [mean_entropy(run, last, l) / run["M"] for l in layers], ls, color=color, marker="o", label=name)
        ax[1, 0].plot(steps, [run["diag"][s][0]["score_std"] for s in steps], ls, color=color, label=name)
        ax[1, 1].plot(steps, [mean_entropy(run, s, 0) / run["M"] for s in steps], ls, color=color, label=name)
        ax[1, 2].plot(layers, col(last, "ffn_neg"), ls, color=color, marker="o", label=name)
    last_step = max(max(r["diag"]) for r in runs.values())
    titles = [f"(a) residual RMS entering each layer, step {last_step}", f"(b) std of the attention scores, step {last_step}",
              f"(c) mean head entropy / M, step {last_step}", "(d) layer 0: std of the attention scores",
              "(e) layer 0: mean head entropy / M", f"(f) share of negative FFN pre-activations, step {last_step}"]
    for a, t in zip(ax.flat, titles):
        a.set_title(t, fontsize=10)
        a.grid(alpha=0.3)
    for a in (ax[0, 0], ax[0, 1], ax[1, 0]):
        a.set_yscale("log")
    for a in (ax[0, 0], ax[0, 1], ax[0, 2], ax[1, 2]):
        a.set_xlabel("layer")
        a.set_xticks(sorted(next(iter(runs.values()))["diag"][last_step]))
    for a in (ax[1, 0], ax[1, 1]):
        a.set_xlabel("step")
    ax[0, 2].set_ylim(top=1.01)
    ax[1, 1].set_ylim(top=1.01)
    ax[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 1
    out = argv[1]
    # finished runs: overload.sh writes run.info when a run completes
    done = lambda n: all(os.path.isfile(os.path.join(out, n, f)) for f in ("run.info", "diag.tsv"))  # noqa: E731
    names = [n for n in RUN_ORDER if done(n)] + sorted(n for n in os.listdir(out) if n not in RUN_ORDER and done(n))
    if not names:
        print(f"error: no finished runs (run.info, diag.tsv) in '{out}' (run scripts/explain/overload.sh)", file=sys.stderr)
        return 1
    try:
        runs = {n: read_run(os.path.join(out, n)) for n in names}
    except (OSError, KeyError, ValueError) as e:
        print(f"error: cannot read the runs in '{out}': {e} (rerun scripts/explain/overload.sh)", file=sys.stderr)
        return 1
    with open(os.path.join(out, "overload.md"), "w") as f:
        f.write(table(runs))
    figure(runs, os.path.join(out, "overload.png"))
    print(f"wrote {out}/overload.png and {out}/overload.md ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
