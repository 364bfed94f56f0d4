#!/usr/bin/env python3
"""plots.py: the paper's five figures and a results table, from the run logs alone.

    python3 scripts/paper/plots.py ROOT [--out DIR]

ROOT is a directory written by scripts/paper/run.sh (out/paper-<scale>): ROOT/<experiment>/<tag>/
with the trainer's main.log, entropy.tsv, slopes.tsv and nonfinite.tsv, plus run.sh's run.info
(settings, trainer, device, commit) and status. Writes into DIR (default ROOT), each figure as
PNG and PDF:

  fig1_entropy_heatmaps     per-head entropy (layer x head) of the four main models, last logged step
  fig2_entropy_bins_eval    head share per entropy bin (M = ln(T!)/T based, and ln T based), and
                            eval loss against training progress
  fig3_learnable_slopes     learnable leaky-ReLU slopes against steps (per layer; global)
  fig4_layer_entropy        per-layer mean entropy against steps, per configuration
  fig5_fixed_slopes         LN-free fixed slopes: per-layer non-finite counts against steps, beside
                            the per-layer entropy
  results.md                eval perplexity and change versus LN+GELU, head shares per bin, slopes,
                            fixed-slope failures; the paper's numbers beside ours

A figure whose runs are missing is skipped with a note (on stdout and in results.md). Every
figure is labelled with the scale, the model, the tokens trained, the trainer and device and the
commit. Needs numpy and matplotlib (Debian's python3-numpy, python3-matplotlib).
"""
import argparse
import math
import os
import subprocess
import sys
import warnings

import numpy as np

EXPERIMENTS = ["main", "slopes", "fixed-slopes"]
MAIN_TAGS = ["ln-gelu", "ln-relu", "none-gelu", "none-relu"]
NAMES = {"ln-gelu": "LN + GELU", "ln-relu": "LN + ReLU", "none-gelu": "LN-free GELU",
         "none-relu": "LN-free ReLU", "none-lrelu-layer": "LN-free, learnable slope per layer",
         "none-lrelu-global": "LN-free, learnable global slope"}
# The paper's eval perplexity, change vs LN+GELU (%), and head share per M-based entropy bin (%).
PAPER = {"ln-gelu": (2.688, 0.0, [4, 14, 74, 8]), "ln-relu": (2.757, 2.5, [6, 16, 74, 3]),
         "none-gelu": (3.197, 18.9, [1, 18, 23, 58]), "none-relu": (2.936, 9.2, [3, 20, 53, 24])}


def name_of(tag):
    """A readable model name for a run tag (none-lrelu-0.1 -> LN-free, fixed slope 0.1)."""
    if tag in NAMES:
        return NAMES[tag]
    if tag.startswith("none-lrelu-"):
        return "LN-free, fixed slope " + tag[len("none-lrelu-"):]
    return tag


# ---- the measurements ---------------------------------------------------------------------------

def max_mean_entropy(T):
    """M = ln(T!)/T: the largest possible per-head mean entropy over T causal query positions
    (query t attends to t+1 keys, at most ln(t+1) nats)."""
    return math.lgamma(T + 1) / T


def bin_counts(entropies, top):
    """Counts of heads in the bins [0,top/4), [top/4,top/2), [top/2,3top/4), [3top/4,top]
    (values above top, possible only by rounding, go to the top bin), and the number of
    non-finite values, which are in no bin."""
    e = np.asarray(entropies, dtype=float).ravel()
    finite = e[np.isfinite(e)]
    idx = np.clip(np.floor(finite / (top / 4.0)).astype(int), 0, 3)
    return np.bincount(idx, minlength=4), int(e.size - finite.size)


def bin_shares(entropies, top):
    """Percent of the finite heads in each of the four bins (see bin_counts); sums to 100."""
    counts, _ = bin_counts(entropies, top)
    total = counts.sum()
    return 100.0 * counts / total if total else np.full(4, np.nan)


def perplexity(loss):
    """exp(mean eval loss); inf when that overflows, nan for a nan loss."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def change_pct(ppl, ref):
    """Relative change of a perplexity versus the reference, in percent."""
    return 100.0 * (ppl / ref - 1.0)


# ---- reading a run ------------------------------------------------------------------------------

def read_info(path):
    """run.info: key=value lines (written by run.sh); {} when absent."""
    info = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    info[k] = v
    return info


def read_main_log(path):
    """main.log -> (train rows [(step, loss, lr, norm)], eval rows [(step, loss)]), as arrays."""
    train, evals = [], []
    with open(path) as f:
        for line in f:
            fields = dict(kv.split(":", 1) for kv in line.split() if ":" in kv)
            if "s" not in fields:
                continue
            step = int(fields["s"])
            if "tel" in fields:
                evals.append((step, float(fields["tel"])))
            elif "trl" in fields:
                train.append((step, float(fields["trl"]), float(fields.get("lr", "nan")),
                              float(fields.get("norm", "nan"))))
    return np.array(train, dtype=float).reshape(-1, 4), np.array(evals, dtype=float).reshape(-1, 2)


def read_tsv(path, ncols):
    """A log TSV with a header line -> float array (rows, ncols); empty when absent."""
    if not os.path.exists(path):
        return np.zeros((0, ncols))
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == ncols and parts[0].lstrip("-").isdigit():
                rows.append([float(p) for p in parts])  # float() reads nan, -nan, inf
    return np.array(rows, dtype=float).reshape(-1, ncols)


class Run:
    """One run's logs: main.log, entropy.tsv, slopes.tsv, nonfinite.tsv, run.info, status."""

    def __init__(self, path, experiment, tag):
        self.path, self.experiment, self.tag = path, experiment, tag
        self.name = name_of(tag)
        self.info = read_info(os.path.join(path, "run.info"))
        self.train, self.evals = read_main_log(os.path.join(path, "main.log"))
        status_path = os.path.join(path, "status")
        self.status = open(status_path).read().strip() if os.path.exists(status_path) else "unfinished"
        # entropy (S, L, NH) at self.entropy_steps
        e = read_tsv(os.path.join(path, "entropy.tsv"), 4)
        self.entropy_steps = np.unique(e[:, 0]).astype(int)
        if len(e):
            L, NH = int(e[:, 1].max()) + 1, int(e[:, 2].max()) + 1
            self.entropy = np.full((len(self.entropy_steps), L, NH), np.nan)
            s_idx = np.searchsorted(self.entropy_steps, e[:, 0].astype(int))
            self.entropy[s_idx, e[:, 1].astype(int), e[:, 2].astype(int)] = e[:, 3]
        else:
            self.entropy = np.zeros((0, 0, 0))
        self.slopes = read_tsv(os.path.join(path, "slopes.tsv"), 3)        # step, layer, slope
        self.nonfinite = read_tsv(os.path.join(path, "nonfinite.tsv"), 4)  # step, layer, att, ffn

    def _int(self, key, default=None):
        try:
            return int(self.info[key])
        except (KeyError, ValueError):
            return default

    @property
    def T(self):
        return self._int("T", 128)

    @property
    def steps_planned(self):
        return self._int("steps", self.steps_done)

    @property
    def steps_done(self):
        """Optimizer steps run: one past the last step in main.log (non-finite steps included)."""
        return int(self.train[:, 0].max()) + 1 if len(self.train) else 0

    @property
    def tokens(self):
        tps = self._int("tokens_per_step")
        return None if tps is None else self.steps_done * tps

    @property
    def final_eval(self):
        """(step, loss) of the last validation, or (None, nan)."""
        return (int(self.evals[-1, 0]), float(self.evals[-1, 1])) if len(self.evals) else (None, math.nan)

    def first_nonfinite_step(self):
        """The first step with a non-finite loss, gradient norm or activation count; None if none."""
        steps = []
        bad = ~np.isfinite(self.train[:, 1]) | ~np.isfinite(self.train[:, 3])
        if bad.any():
            steps.append(self.train[bad, 0].min())
        nf = self.nonfinite
        if len(nf) and ((nf[:, 2] > 0) | (nf[:, 3] > 0)).any():
            steps.append(nf[(nf[:, 2] > 0) | (nf[:, 3] > 0), 0].min())
        return int(min(steps)) if steps else None

    def layer_entropy(self):
        """(steps, per-layer mean over heads (S, L))."""
        if not self.entropy.size:
            return self.entropy_steps, np.zeros((0, 0))
        with warnings.catch_warnings():  # a step whose heads are all nan gives nan, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            return self.entropy_steps, np.nanmean(self.entropy, axis=2)

    def final_entropy(self):
        """(step, (L, NH)) at the last logged step, or (None, None)."""
        if not len(self.entropy_steps):
            return None, None
        return int(self.entropy_steps[-1]), self.entropy[-1]


def find_runs(root):
    """{experiment: [Run, ...]} for every ROOT/<experiment>/<tag>/main.log (not the .partial ones)."""
    runs = {}
    for exp in EXPERIMENTS:
        d = os.path.join(root, exp)
        if not os.path.isdir(d):
            continue
        tags = [t for t in os.listdir(d) if ".partial-" not in t and os.path.exists(os.path.join(d, t, "main.log"))]
        if exp == "main":
            tags.sort(key=lambda t: (MAIN_TAGS.index(t) if t in MAIN_TAGS else 99, t))
        elif exp == "fixed-slopes":
            tags.sort(key=lambda t: float(t.rsplit("-", 1)[1]) if t.rsplit("-", 1)[1].replace(".", "").isdigit() else 99)
        else:  # per layer before global
            tags.sort(key=lambda t: (not t.endswith("-layer"), t))
        if tags:
            runs[exp] = [Run(os.path.join(d, t), exp, t) for t in tags]
    return runs


# ---- labels -------------------------------------------------------------------------------------

def human(n):
    """51200 -> 51.2K, 65536000 -> 65.5M."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or "uncommitted"
    except OSError:
        return "uncommitted"


def label(runs):
    """One line naming scale, model, tokens, trainer/device and commit of these runs."""
    def values(key, fallback="?"):
        return " / ".join(sorted({r.info.get(key, fallback) for r in runs}))
    tokens = sorted({r.tokens for r in runs if r.tokens is not None})
    if not tokens:
        tok = "tokens unknown"
    elif len(tokens) == 1:
        tok = f"{human(tokens[0])} tokens per run"
    else:
        tok = f"{human(tokens[0])}-{human(tokens[-1])} tokens per run"
    tps = sorted({f"{int(v):,}" if v.isdigit() else v for v in (r.info.get("tokens_per_step", "?") for r in runs)})
    commit = values("commit", git_commit())
    return (f"scale {values('scale')} | {values('model')}, T={values('T', '128')} | {tok} "
            f"({' / '.join(tps)} per step) | {values('trainer')} on {values('device')} | commit {commit}")


# ---- figures ------------------------------------------------------------------------------------

def save(fig, out, name, runs):
    fig.text(0.5, 0.005, label(runs), ha="center", va="bottom", fontsize=7, color="0.35")
    paths = []
    for ext in ("png", "pdf"):
        p = os.path.join(out, f"{name}.{ext}")
        fig.savefig(p, dpi=130, metadata={"CreationDate": None} if ext == "pdf" else None)
        paths.append(p)
    import matplotlib.pyplot as plt
    plt.close(fig)
    print("wrote " + ", ".join(paths))


def fig1_heatmaps(plt, runs, out):
    n = len(runs)
    cols = 2 if n == 4 else n
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.9 * rows + 0.5), squeeze=False)
    M = max_mean_entropy(runs[0].T)
    im = None
    for ax, r in zip(axes.flat, runs):
        step, E = r.final_entropy()
        if E is None:
            ax.set_title(f"{r.name}\n(no entropy logged)")
            ax.axis("off")
            continue
        im = ax.imshow(E, cmap="viridis", vmin=0, vmax=M, aspect="auto")
        L, NH = E.shape
        if L * NH <= 144:
            for l in range(L):
                for h in range(NH):
                    v = E[l, h]
                    ax.text(h, l, f"{v:.1f}", ha="center", va="center", fontsize=6 if L * NH > 36 else 8,
                            color="black" if v > 0.6 * M else "white")
        ax.set_xticks(range(NH))
        ax.set_yticks(range(L))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"{r.name} (step {step})", fontsize=10)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"Figure 1: per-head attention entropy (nats; M = ln(T!)/T = {M:.3f})")
    fig.tight_layout(rect=(0, 0.03, 0.9, 0.96))
    if im is not None:
        fig.colorbar(im, cax=fig.add_axes([0.92, 0.1, 0.02, 0.78]), label="entropy (nats)")
    save(fig, out, "fig1_entropy_heatmaps", runs)


def fig2_bins_eval(plt, runs, out):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    T = runs[0].T
    M, lnT = max_mean_entropy(T), math.log(T)
    width = 0.8 / len(runs)
    for k, (top, sym) in enumerate(((M, "M"), (lnT, "ln T"))):
        ax = axes[k]
        for i, r in enumerate(runs):
            step, E = r.final_entropy()
            if E is None:
                continue
            x = np.arange(4) + (i - (len(runs) - 1) / 2) * width
            ax.bar(x, bin_shares(E, top), width, label=f"{r.name} (step {step})", color=f"C{i}")
            if k == 0 and r.tag in PAPER:
                ax.plot(x, PAPER[r.tag][2], "k_", markersize=10, mew=2,
                        label="paper (black ticks)" if i == 0 else None)
        ax.set_xticks(range(4))
        ax.set_xticklabels([f"[0, {sym}/4)", f"[{sym}/4, {sym}/2)", f"[{sym}/2, 3{sym}/4)", f"[3{sym}/4, {sym}]"])
        ax.set_ylabel("share of heads (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"head share per entropy bin, {sym} = {top:.3f} (T = {T})", fontsize=10)
        ax.legend(fontsize=7)
    ax = axes[2]
    for i, r in enumerate(runs):
        if len(r.evals):
            ax.plot(r.evals[:, 0] / max(r.steps_planned, 1), r.evals[:, 1], "o-", ms=3, color=f"C{i}", label=r.name)
    ax.set_xlabel("training progress (fraction of the run's steps)")
    ax.set_ylabel("eval loss (nats)")
    ax.set_title("eval loss", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle("Figure 2: entropy distribution of heads (last logged step) and eval loss")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    save(fig, out, "fig2_entropy_bins_eval", runs)


def fig3_slopes(plt, runs, out):
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.2), squeeze=False)
    for ax, r in zip(axes.flat, runs):
        s = r.slopes
        if not len(s):
            ax.set_title(f"{r.name}\n(no slopes logged)", fontsize=10)
            continue
        layers = np.unique(s[:, 1]).astype(int)
        cmap = plt.get_cmap("viridis")
        for l in layers:
            sel = s[:, 1] == l
            ax.plot(s[sel, 0], s[sel, 2], color=cmap(l / max(len(layers) - 1, 1)) if l >= 0 else "C3",
                    label="global" if l < 0 else f"layer {l}")
        ax.axhline(0, color="k", lw=0.8)
        ax.axhline(0.01, color="0.5", lw=0.8, ls=":", label="initial 0.01")
        ax.set_xlabel("step")
        ax.set_ylabel("slope")
        ax.set_title(r.name, fontsize=10)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Figure 3: learnable leaky-ReLU slopes during training")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    save(fig, out, "fig3_learnable_slopes", runs)


def plot_layer_entropy(plt, ax, r, M, marker=""):
    """Per-layer mean entropy against steps on ax, with the maximum M dashed."""
    steps, LE = r.layer_entropy()
    cmap = plt.get_cmap("viridis")
    L = LE.shape[1] if LE.ndim == 2 else 0
    for l in range(L):
        ax.plot(steps, LE[:, l], marker + "-", ms=2, color=cmap(l / max(L - 1, 1)), label=f"layer {l}")
    ax.axhline(M, color="k", ls="--", lw=0.8, label=f"M = {M:.2f}")
    ax.set_ylim(0, M * 1.08)
    ax.set_xlabel("step")
    ax.set_ylabel("mean entropy (nats)")


def fig4_layer_entropy(plt, runs, out):
    cols = min(3, len(runs))
    rows = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows + 0.4), squeeze=False)
    M = max_mean_entropy(runs[0].T)
    for ax, r in zip(axes.flat, runs):
        plot_layer_entropy(plt, ax, r, M)
        ax.set_title(r.name, fontsize=10)
        ax.legend(fontsize=6, ncol=2)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.suptitle("Figure 4: per-layer attention entropy during training (training batches)")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    save(fig, out, "fig4_layer_entropy", runs)


def fig5_fixed_slopes(plt, runs, out):
    fig, axes = plt.subplots(len(runs), 2, figsize=(12, 3.2 * len(runs) + 0.6), squeeze=False)
    M = max_mean_entropy(runs[0].T)
    cmap = plt.get_cmap("viridis")
    for row, r in zip(axes, runs):
        first = r.first_nonfinite_step()
        nf = r.nonfinite
        ax = row[0]
        if len(nf):
            L = int(nf[:, 1].max()) + 1
            for l in range(L):
                sel = nf[:, 1] == l
                # markers only: rows exist on entropy steps and non-finite steps, not on every step
                ax.plot(nf[sel, 0], nf[sel, 2] + nf[sel, 3], "o", ms=3, color=cmap(l / max(L - 1, 1)), label=f"layer {l}")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(0, max(10.0, 2.0 * float((nf[:, 2] + nf[:, 3]).max())) if len(nf) else 10.0)
        ax.set_xlabel("step")
        ax.set_ylabel("non-finite values")
        ax.set_title(f"{r.name}: non-finite attention scores + FFN activations", fontsize=9)
        plot_layer_entropy(plt, row[1], r, M, marker=".")  # dots: nan steps leave gaps
        row[1].set_title(f"{r.name}: per-layer entropy", fontsize=9)
        for a in row:
            if first is not None:
                a.axvline(first, color="r", lw=0.8, ls=":", label=f"first non-finite: step {first}")
            a.set_xlim(0, max(r.steps_planned, 1))
            a.legend(fontsize=6, ncol=2)
        if first is None:
            ax.text(0.5, 0.6, f"no non-finite values in {r.steps_done} steps", transform=ax.transAxes,
                    ha="center", va="center", bbox=dict(facecolor="white", edgecolor="0.7"))
    fig.suptitle("Figure 5: LN-free with fixed leaky-ReLU slopes (--on-nan log)")
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    save(fig, out, "fig5_fixed_slopes", runs)


# ---- the table ----------------------------------------------------------------------------------

def fmt(x, spec=".3f", none="-"):
    return none if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def results_md(runs, notes):
    """results.md: perplexities, head shares, slopes, fixed-slope failures; paper beside ours."""
    allruns = [r for rs in runs.values() for r in rs]
    lines = ["# Results", "", label(allruns), ""]
    main = runs.get("main", [])
    ref = next((r for r in main if r.tag == "ln-gelu"), None)
    ref_ppl = perplexity(ref.final_eval[1]) if ref else None
    T = allruns[0].T
    M, lnT = max_mean_entropy(T), math.log(T)

    def wall(r):
        w = [f for f in r.status.split() if f.startswith("wall_s=")]
        return w[0][7:] + " s" if w else "-"

    if main:
        lines += ["## Eval perplexity, exp(final eval loss)", "",
                  "| model | tokens | eval loss | PPL | change vs LN+GELU | paper PPL | paper change | run | wall time |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in main + runs.get("slopes", []):
            step, loss = r.final_eval
            ppl = perplexity(loss)
            chg = change_pct(ppl, ref_ppl) if ref_ppl and math.isfinite(ppl) else None
            p = PAPER.get(r.tag)
            lines.append(f"| {r.name} | {human(r.tokens) if r.tokens else '-'} | {fmt(loss, '.4f')} | {fmt(ppl, '.3f')} | "
                         f"{fmt(chg, '+.1f')}{'%' if chg is not None else ''} | {fmt(p[0] if p else None)} | "
                         f"{fmt(p[1] if p else None, '+.1f')}{'%' if p else ''} | {r.status.split()[0]} | {wall(r)} |")
        byname = {r.tag: perplexity(r.final_eval[1]) for r in main}
        if "none-gelu" in byname and "none-relu" in byname and math.isfinite(byname["none-gelu"]):
            chg = change_pct(byname["none-relu"], byname["none-gelu"])
            lines += ["", f"LN-free ReLU's perplexity versus LN-free GELU's: {chg:+.1f}% "
                          f"(paper: {change_pct(PAPER['none-relu'][0], PAPER['none-gelu'][0]):+.1f}%)."]
        lines.append("")

    shown = main + runs.get("slopes", [])
    if shown:
        lines += ["## Head share per entropy bin (training batch, last logged step)", "",
                  f"T = {T}: M = ln(T!)/T = {M:.3f}, ln T = {lnT:.3f}. Bins [0,X/4), [X/4,X/2), [X/2,3X/4), [3X/4,X] "
                  "for X = M and X = ln T, low to high, in % of the heads; the paper's shares are for X = M.", "",
                  "| model | step | heads | M bins (ours) | M bins (paper) | ln T bins (ours) |",
                  "|---|---|---|---|---|---|"]
        for r in shown:
            step, E = r.final_entropy()
            if E is None:
                lines.append(f"| {r.name} | - | - | - | - | - |")
                continue
            counts, bad = bin_counts(E, M)
            heads = f"{int(counts.sum())}" + (f" (+{bad} non-finite)" if bad else "")
            sm = " / ".join(f"{v:.1f}" for v in bin_shares(E, M))
            sl = " / ".join(f"{v:.1f}" for v in bin_shares(E, lnT))
            p = " / ".join(str(v) for v in PAPER[r.tag][2]) if r.tag in PAPER else "-"
            lines.append(f"| {r.name} | {step} | {heads} | {sm} | {p} | {sl} |")
        lines.append("")

    if runs.get("slopes"):
        lines += ["## Learnable slopes (initial 0.01), after the last step", "", "| run | slopes |", "|---|---|"]
        for r in runs["slopes"]:
            s = r.slopes
            if not len(s):
                lines.append(f"| {r.name} | - |")
                continue
            last = s[s[:, 0] == s[:, 0].max()]
            vals = ", ".join(("global " if l < 0 else "") + f"{v:.4f}" for l, v in zip(last[:, 1], last[:, 2]))
            lines.append(f"| {r.name} (step {int(s[:, 0].max())}) | {vals} |")
        lines.append("")

    if runs.get("fixed-slopes"):
        lines += ["## Fixed slopes, LN-free (--on-nan log)", "",
                  "| run | steps | first non-finite step | last eval loss | PPL | run | wall time |",
                  "|---|---|---|---|---|---|---|"]
        for r in runs["fixed-slopes"]:
            first = r.first_nonfinite_step()
            step, loss = r.final_eval
            lines.append(f"| {r.name} | {r.steps_done} | {first if first is not None else 'none'} | "
                         f"{fmt(loss, '.4f')} | {fmt(perplexity(loss), '.3f')} | {r.status.split()[0]} | {wall(r)} |")
        lines.append("")

    lines += ["## Paper (GPT-2 124M, CodeParrot 2.1B tokens, T = 128)", "",
              "| model | PPL | change | head share per M bin (%) |", "|---|---|---|---|"]
    for tag in MAIN_TAGS:
        p = PAPER[tag]
        lines.append(f"| {NAMES[tag]} | {p[0]:.3f} | {p[1]:+.1f}% | {' / '.join(map(str, p[2]))} |")
    lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="out/paper-<scale>, as written by scripts/paper/run.sh")
    ap.add_argument("--out", help="where figures and results.md go (default: ROOT)")
    args = ap.parse_args(argv)
    out = args.out or args.root
    runs = find_runs(args.root)
    if not runs:
        print(f"plots.py: error: no runs under {args.root} (expected {args.root}/main/<tag>/main.log ...)", file=sys.stderr)
        return 1
    os.makedirs(out, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = []
    main_runs = runs.get("main", [])
    figures = [
        ("Figure 1", fig1_heatmaps, main_runs, "no main runs (scripts/paper/run.sh SCALE main)"),
        ("Figure 2", fig2_bins_eval, main_runs, "no main runs"),
        ("Figure 3", fig3_slopes, runs.get("slopes", []), "no slopes runs (scripts/paper/run.sh SCALE slopes)"),
        ("Figure 4", fig4_layer_entropy, main_runs + runs.get("slopes", []), "no main or slopes runs"),
        ("Figure 5", fig5_fixed_slopes, runs.get("fixed-slopes", []), "no fixed-slopes runs (scripts/paper/run.sh SCALE fixed-slopes)"),
    ]
    for title, draw, rs, why in figures:
        if rs:
            draw(plt, rs, out)
        else:
            notes.append(f"{title} skipped: {why}.")
            print(f"note: {title} skipped: {why}")
    for rs in runs.values():
        for r in rs:
            if not r.status.startswith("complete"):
                notes.append(f"{r.experiment}/{r.tag}: {r.status}")
    path = os.path.join(out, "results.md")
    with open(path, "w") as f:
        f.write(results_md(runs, notes))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
