#!/usr/bin/env python3
"""plots.py: the paper's five figures and a results table, from the run logs alone.

    python3 scripts/paper/plots.py ROOT [--out DIR]

ROOT is a directory written by scripts/paper/run.sh (out/paper-<scale>): ROOT/<experiment>/<tag>/
with the trainer's main.log, entropy.tsv, slopes.tsv and nonfinite.tsv, plus run.sh's run.info
(settings, trainer, device, commit) and status. Writes into DIR (default ROOT), each figure as
PNG and PDF:

  fig1_entropy_heatmaps     per-head entropy (layer x head) of the four main models, last logged
                            step; panels (a)-(d), colour bar ticks at the bin edges M/4 ... M
  fig2_entropy_bins_eval    head share per entropy bin (M = ln(T!)/T based, and ln T based) with
                            the paper's share per model, and eval loss against tokens trained
                            (from the second evaluation on, so the final spread shows)
  fig3_learnable_slopes     learnable leaky-ReLU slopes against updates, from the initial slope
  fig4_layer_entropy        per-layer mean entropy against steps, per configuration
  fig5_fixed_slopes         LN-free fixed slopes: per-layer non-finite counts (attention, FFN),
                            train loss and gradient norm, per-layer entropy; the first
                            non-finite value marked on the quantity it appeared in
  results.md                a banner on what the scale can show; eval perplexity and change
                            versus LN+GELU, head shares per bin, slopes, fixed-slope failures;
                            the paper's numbers beside ours

A run that did not finish cleanly (stopped by a NaN, unfinished, failed, or one that went on
through non-finite steps under --on-nan log) is marked in every figure and table, and no change
versus LN+GELU is computed from it. Non-finite values are drawn in a shaded strip at the top of
their axis (x NaN, ^ +inf), never as a gap or a drop. A figure whose runs are missing is skipped
with a note (on stdout and in results.md). Every figure is labelled with the scale, the model,
the tokens trained, the trainer and device and the commit. Needs numpy and matplotlib (Debian's
python3-numpy, python3-matplotlib).
"""
import argparse
import math
import os
import re
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
PAPER_TOKENS = 2.1e9         # the paper's training tokens per model (CodeParrot, one epoch)
PAPER_MODEL = "d12"          # GPT-2 124M
DEFAULT_LEARNABLE_SLOPE = 0.01  # the trainer's initial learnable slope when --act names none (config.h)


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


def model_params(desc):
    """Parameters of a GPT-2 from its model descriptor (llm.c's d6...d48 or L<n>H<n>C<n>[T<n>][V<n>],
    as the trainer's -e reads it), with the tied embedding and the unpadded vocabulary, so the
    banner can say how much smaller than the paper's model a scale is; None if not a descriptor."""
    family = {"d6": (6, 384), "d12": (12, 768), "d24": (24, 1024), "d36": (36, 1280), "d48": (48, 1600)}
    maxT, V = 1024, 50257
    if desc in family:
        L, C = family[desc]
    else:
        fields = dict((k, int(v)) for k, v in re.findall(r"([LHCTV])(\d+)", desc or ""))
        if not re.fullmatch(r"(?:[LHCTV]\d+)+", desc or "") or not {"L", "C"} <= fields.keys():
            return None
        L, C, maxT, V = fields["L"], fields["C"], fields.get("T", maxT), fields.get("V", V)
    per_layer = 12 * C * C + 13 * C  # attention and MLP weights and biases, two LayerNorms
    return V * C + maxT * C + L * per_layer + 2 * C


# ---- reading a run ------------------------------------------------------------------------------

def read_info(path):
    """run.info: key=value lines (written by run.sh); {} when absent. A resumed run appends its
    new settings, so a later line wins."""
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
        self.status = open(status_path).read().strip() if os.path.exists(status_path) else ""
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
        # the paper's metrics (paper.tsv; absent from older runs): (S, L, NH) each at paper_steps
        pp = read_tsv(os.path.join(path, "paper.tsv"), 5)  # step, layer, head, nan_entries, entropy_nansum
        self.paper_steps = np.unique(pp[:, 0]).astype(int)
        self.paper_nan = self.paper_entropy = np.zeros((0, 0, 0))
        if len(pp):
            L, NH = int(pp[:, 1].max()) + 1, int(pp[:, 2].max()) + 1
            s_idx = np.searchsorted(self.paper_steps, pp[:, 0].astype(int))
            self.paper_nan = np.full((len(self.paper_steps), L, NH), np.nan)
            self.paper_entropy = np.full((len(self.paper_steps), L, NH), np.nan)
            self.paper_nan[s_idx, pp[:, 1].astype(int), pp[:, 2].astype(int)] = pp[:, 3]
            self.paper_entropy[s_idx, pp[:, 1].astype(int), pp[:, 2].astype(int)] = pp[:, 4]

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

    def tokens_at(self, steps):
        """Tokens trained after `steps` steps (the step numbers themselves without tokens_per_step)."""
        return np.asarray(steps, dtype=float) * self._int("tokens_per_step", 1)

    @property
    def final_eval(self):
        """(step, loss) of the last validation, or (None, nan)."""
        return (int(self.evals[-1, 0]), float(self.evals[-1, 1])) if len(self.evals) else (None, math.nan)

    @property
    def initial_slope(self):
        """The learnable slope before the first update: S0 of run.info's act=lrelu-layer:S0 or
        lrelu-global:S0, else the trainer's default. slopes.tsv cannot say: its row for step s
        holds the slope after step s's update."""
        act = self.info.get("act", "")
        if ":" in act:
            try:
                return float(act.split(":", 1)[1])
            except ValueError:
                pass
        return DEFAULT_LEARNABLE_SLOPE

    def nonfinite_steps(self):
        """Sorted steps with a non-finite loss, gradient norm or activation count."""
        steps = set(self.train[~np.isfinite(self.train[:, 1]) | ~np.isfinite(self.train[:, 3]), 0].astype(int))
        nf = self.nonfinite
        steps |= set(nf[(nf[:, 2] > 0) | (nf[:, 3] > 0), 0].astype(int))
        return sorted(steps)

    def first_nonfinite_step(self):
        """The first step with a non-finite loss, gradient norm or activation count; None if none."""
        steps = self.nonfinite_steps()
        return steps[0] if steps else None

    def first_nonfinite_event(self):
        """(step, quantity, layer, value) of the first non-finite value, in the trainer's order
        within a step (train_common.h first_nonfinite: each layer's attention scores, then its FFN
        activations, forward; then the loss; then the gradient norm). quantity: "att" or "ffn"
        (value: how many values, layer: the layer), "loss" or "norm" (value: the logged one,
        layer None). None when every value was finite."""
        step = self.first_nonfinite_step()
        if step is None:
            return None
        nf = self.nonfinite[self.nonfinite[:, 0] == step]
        for _, layer, att, ffn in nf[np.argsort(nf[:, 1])]:
            if att > 0:
                return step, "att", int(layer), int(att)
            if ffn > 0:
                return step, "ffn", int(layer), int(ffn)
        row = self.train[self.train[:, 0] == step][0]
        if not np.isfinite(row[1]):
            return step, "loss", None, float(row[1])
        return step, "norm", None, float(row[3])

    def outcome(self):
        """(ok, short, long): whether the run trained all its steps with finite values (or with its
        non-finite steps skipped), so that its final eval can be compared; a one-word state for
        table cells; a sentence for notes and figure titles. Under --on-nan log the trainer applies
        a non-finite step's update and exits 0; run.sh now writes `nonfinite` for such a run, but
        wrote `complete` before, so the logs decide, not the status word alone. Computed once."""
        if not hasattr(self, "_outcome"):
            self._outcome = self._read_outcome()
        return self._outcome

    def _read_outcome(self):
        word = self.status.split()[0] if self.status else ""
        done, planned = self.steps_done, self.steps_planned
        first = self.first_nonfinite_step()
        bad = self.nonfinite_steps()
        on_nan = self.info.get("on_nan", "stop")
        if word == "":
            return False, "unfinished", f"unfinished: {done} of {planned} steps logged, no status (killed or still running)"
        if word == "stopped":
            return False, "stopped", f"stopped at step {first} of {planned} by a non-finite value (--on-nan stop)"
        if word == "failed":
            code = next((f for f in self.status.split() if f.startswith("exit=")), "exit=?")
            return False, "failed", f"failed ({code}) after {done} of {planned} steps"
        if word not in ("complete", "nonfinite"):
            return False, word, f"status '{self.status}'"
        if word == "nonfinite" or (bad and on_nan == "log"):  # run.sh's word, or older logs read afresh
            params = "non-finite parameters at the end" if not math.isfinite(self.final_eval[1]) else "final eval finite"
            return False, "non-finite", (f"non-finite from step {first} ({len(bad)} of {done} steps), their updates "
                                         f"applied (--on-nan log); {params}")
        step, loss = self.final_eval
        if step != planned or not math.isfinite(loss):
            return False, "no final eval", f"{done} of {planned} steps, but no finite eval at step {planned}"
        if bad:
            return True, "complete", f"complete; {len(bad)} non-finite steps skipped (--on-nan {on_nan})"
        return True, "complete", "complete"

    def layer_entropy(self):
        """(steps, per-layer mean over heads (S, L)); nan for a layer with any non-finite head,
        so that a NaN shows as NaN and is not averaged away."""
        if not self.entropy.size:
            return self.entropy_steps, np.zeros((0, 0))
        return self.entropy_steps, self.entropy.mean(axis=2)

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


def trained_until(r):
    """The steps whose updates a run applied: up to its stopping step (the non-finite step a stopped
    run did not apply), else every step it logged."""
    return r.first_nonfinite_step() if r.outcome()[1] == "stopped" else r.steps_done


def state_words(r):
    """A few words on how a run that did not finish cleanly ended ('' for one that did)."""
    ok, short, _ = r.outcome()
    if ok:
        return ""
    first = r.first_nonfinite_step()
    where = {"stopped": f"at step {first}", "non-finite": f"from step {first}"}.get(
        short, f"after {r.steps_done} of {r.steps_planned} steps")
    return f"{short} {where}"


def titled(r, text=None, longest=None):
    """A panel title: the run's name (or text); its state when it did not finish cleanly, or its
    length when it planned fewer steps than the longest run beside it (longest)."""
    base = text or r.name
    if state_words(r):
        return f"{base}\n[{state_words(r).upper()}]"
    if longest and r.steps_planned < longest:
        return f"{base}\n[{r.steps_planned} STEPS PLANNED, NOT {longest}]"
    return base


# ---- drawing helpers ------------------------------------------------------------------------------

LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">"]
STRIP = 0.1  # the top fraction of an axis where non-finite values are drawn


def layer_style(plt, l, L):
    """Colour, line style and marker of layer l of L: a qualitative colour map with a line style
    and a marker per layer, so that layers whose curves coincide stay distinguishable."""
    cmap = plt.get_cmap("tab10" if L <= 10 else "tab20")
    return {"color": cmap(l % cmap.N), "ls": LINESTYLES[l % len(LINESTYLES)], "marker": MARKERS[l % len(MARKERS)]}


def markevery(n, k, L):
    """markevery for curve k of L with n points: about ten markers per curve, the curves' markers
    shifted against each other so that where curves coincide each one still shows its own."""
    every = max(L, n // 10)
    return (k * every // L, every)


def finite_or_nan(y):
    """y with inf replaced by nan: a line is drawn through finite values only (inf would skew the
    axis limits); the non-finite points are drawn by mark_nonfinite."""
    y = np.asarray(y, dtype=float)
    return np.where(np.isfinite(y), y, np.nan)


def mark_nonfinite(ax, x, y, color, size=5, slot=(0, 1)):
    """Draws the non-finite points of y in the strip at the top of ax (x for NaN, ^ for +inf,
    v for -inf), so that a NaN reads as NaN, not as missing data or a fall to 0; curve k of n
    (slot) gets its own row of the strip, so that coinciding NaNs of several curves all show.
    Returns how many were drawn; call reserve_nonfinite_strip after the finite data are drawn."""
    import matplotlib.transforms as mtransforms
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    strip = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    n = 0
    for sel, marker in ((np.isnan(y), "x"), (np.isposinf(y), "^"), (np.isneginf(y), "v")):
        if sel.any():
            ax.plot(x[sel], np.full(sel.sum(), 1 - STRIP * (slot[0] + 0.5) / slot[1]), ls="none", marker=marker, ms=size,
                    color=color, transform=strip, clip_on=False)
            n += int(sel.sum())
    return n


def reserve_nonfinite_strip(ax):
    """Raises the top of ax's y range so the finite data keep clear of the top STRIP of the axis,
    which is shaded and labelled as where non-finite values are drawn (see mark_nonfinite)."""
    from matplotlib.patches import Rectangle
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        lo_l, hi_l = math.log10(lo), math.log10(hi)
        ax.set_ylim(lo, 10 ** (lo_l + (hi_l - lo_l) / (1 - STRIP)))
    else:
        ax.set_ylim(lo, lo + (hi - lo) / (1 - STRIP))
    ax.add_patch(Rectangle((0, 1 - STRIP), 1, STRIP, transform=ax.transAxes, color="mistyrose", zorder=0, lw=0))
    ax.text(1.005, 1 - STRIP / 2, "NaN x\ninf ^", transform=ax.transAxes, fontsize=6, va="center",
            ha="left", color="darkred")


def mark_not_run(ax, r):
    """Shades the steps a run that ended early did not train (from its last step to the planned
    last one) and names why, so a curve that stops reads as stopped, not as finished."""
    done, planned = trained_until(r), r.steps_planned
    if not state_words(r) or done >= planned:
        return
    ax.axvspan(done, planned, facecolor="0.94", edgecolor="0.75", hatch="//", lw=0, zorder=0)
    ax.text((done + planned) / 2, 0.5, f"not trained\n({state_words(r)})",
            transform=ax.get_xaxis_transform(), ha="center", va="center", fontsize=7, color="0.3")


def save(fig, out, name, runs):
    """Labels the figure with its runs (label), writes it as PNG and PDF into out, closes it and
    returns it; with out None it is only drawn, not written (the tests read back what was drawn)."""
    fig.text(0.5, 0.005, label(runs), ha="center", va="bottom", fontsize=7, color="0.35")
    paths = []
    if out is None:
        fig.canvas.draw()
    for ext in ("png", "pdf") if out is not None else ():
        p = os.path.join(out, f"{name}.{ext}")
        fig.savefig(p, dpi=130, metadata={"CreationDate": None} if ext == "pdf" else None)
        paths.append(p)
    import matplotlib.pyplot as plt
    plt.close(fig)
    if paths:
        print("wrote " + ", ".join(paths))
    return fig


# ---- figures ------------------------------------------------------------------------------------

def fig1_heatmaps(plt, runs, out):
    n = len(runs)
    cols = 2 if n == 4 else n
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 1.2, 3.9 * rows + 0.7), squeeze=False)
    M = max_mean_entropy(runs[0].T)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("lightcoral")  # a NaN head is a red cell labelled NaN, not a blank one
    im = None
    for k, (ax, r) in enumerate(zip(axes.flat, runs)):
        letter = f"({chr(ord('a') + k)})"
        step, E = r.final_entropy()
        if E is None:
            ax.set_title(f"{letter} {r.name}\n(no entropy logged)", fontsize=10)
            ax.axis("off")
            continue
        im = ax.imshow(np.ma.masked_invalid(E), cmap=cmap, vmin=0, vmax=M, aspect="auto")
        L, NH = E.shape
        if L * NH <= 144:
            for l in range(L):
                for h in range(NH):
                    v = E[l, h]
                    ax.text(h, l, f"{v:.2f}" if np.isfinite(v) else "NaN", ha="center", va="center",
                            fontsize=6 if L * NH > 36 else 8, color="black" if not v <= 0.6 * M else "white")
        ax.set_xticks(range(NH))
        ax.set_yticks(range(L))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(titled(r, f"{letter} {r.name} (step {step})"), fontsize=10, loc="left")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"Figure 1: per-head attention entropy (nats; M = ln(T!)/T = {M:.3f}, T = {runs[0].T})")
    fig.tight_layout(rect=(0, 0.03, 0.8, 0.96))
    if im is not None:
        # ticks at the entropy bins' edges (Figure 2), in nats to two decimals and in % of M
        cb = fig.colorbar(im, cax=fig.add_axes([0.82, 0.1, 0.02, 0.78]), label="entropy (nats, % of M)")
        ticks = [0, M / 4, M / 2, 3 * M / 4, M]
        cb.set_ticks(ticks)
        cb.set_ticklabels([f"{t:.2f} ({100 * t / M:.0f}%)" for t in ticks])
    return save(fig, out, "fig1_entropy_heatmaps", runs)


def draw_bins(ax, runs, top, sym, with_paper):
    """Bars of each run's head share per bin of [0, top]; a run that did not finish cleanly is
    hatched; the paper's share, per model, as a black tick with a diamond in the model's colour."""
    width = 0.8 / len(runs)
    for i, r in enumerate(runs):
        step, E = r.final_entropy()
        if E is None:
            continue
        ok, short, _ = r.outcome()
        x = np.arange(4) + (i - (len(runs) - 1) / 2) * width
        counts, bad = bin_counts(E, top)
        if bad and not counts.sum():  # no finite head: say so where its bars would be
            for xi in x:
                ax.text(xi, 2, "all heads NaN", rotation=90, ha="center", va="bottom", fontsize=7, color=f"C{i}")
        ax.bar(x, bin_shares(E, top), width, color=f"C{i}", hatch=None if ok else "xx", edgecolor="white" if ok else "k",
               lw=0 if ok else 0.5, label=f"{r.name} (step {step})" + ("" if ok else f" [{short}]"))
        if with_paper and r.tag in PAPER:
            ax.hlines(PAPER[r.tag][2], x - width / 2, x + width / 2, color="k", lw=2)
            ax.plot(x, PAPER[r.tag][2], "D", ms=5, mfc=f"C{i}", mec="k", ls="none", label=f"paper: {r.name}")
    ax.set_xticks(range(4))
    ax.set_xticklabels([f"[0, {sym}/4)", f"[{sym}/4, {sym}/2)", f"[{sym}/2, 3{sym}/4)", f"[3{sym}/4, {sym}]"])
    ax.set_ylabel("share of heads (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"head share per entropy bin, {sym} = {top:.3f} (T = {runs[0].T})", fontsize=10)
    ax.legend(fontsize=6.5, ncol=2 if with_paper else 1)


def draw_eval(ax, runs):
    """Eval loss against tokens trained, from the second evaluation on: the first (at step 0, the
    untrained model, ~ln V) would set the scale and flatten the final spread. A run that did not
    finish cleanly ends in a big X, with a dotted line where it ended and its state in the legend."""
    first = []
    nonfinite = 0
    for i, r in enumerate(runs):
        if not len(r.evals):
            continue
        first.append(r.evals[0, 1])
        ev = r.evals[1:]
        x = r.tokens_at(ev[:, 0])
        state = state_words(r)
        ax.plot(x, finite_or_nan(ev[:, 1]), "o-", ms=3, color=f"C{i}", label=f"{r.name} [{state}]" if state else r.name)
        nonfinite += mark_nonfinite(ax, x, ev[:, 1], f"C{i}", slot=(i, len(runs)))
        if state:
            good = np.isfinite(ev[:, 1])
            if good.any():
                ax.plot(x[good][-1], ev[good, 1][-1], "X", ms=11, color=f"C{i}", mec="k")
            # where it went wrong: its first non-finite step, or where an unfinished run ended
            end = float(r.tokens_at(r.first_nonfinite_step() if r.first_nonfinite_step() is not None else trained_until(r)))
            ax.axvline(end, color=f"C{i}", ls=":", lw=1.5)
            ax.text(end, 0.03, f"{r.name}: {state} ", transform=ax.get_xaxis_transform(), rotation=90,
                    fontsize=7, color=f"C{i}", ha="right", va="bottom")
    if nonfinite:
        reserve_nonfinite_strip(ax)
    ax.set_xlabel("tokens trained")
    ax.xaxis.set_major_formatter(lambda v, _: human(int(v)) if v > 0 else "0")
    ax.set_ylabel("eval loss (nats)")
    span = f"; step 0: {min(first):.2f}-{max(first):.2f}" if first else ""
    ax.set_title(f"eval loss after the first evaluation{span}", fontsize=10)
    ax.legend(fontsize=7)


def fig2_bins_eval(plt, runs, out):
    fig, axes = plt.subplots(1, 3, figsize=(16.5, 4.9))
    T = runs[0].T
    draw_bins(axes[0], runs, max_mean_entropy(T), "M", with_paper=True)
    draw_bins(axes[1], runs, math.log(T), "ln T", with_paper=False)
    draw_eval(axes[2], runs)
    fig.suptitle("Figure 2: entropy distribution of heads (last logged step) and eval loss")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    return save(fig, out, "fig2_entropy_bins_eval", runs)


def slope_curves(r):
    """{layer: (x, slope)} with x the updates applied: the initial slope at 0, then slopes.tsv's row
    for step s (the slope after step s's update) at s + 1. Layer -1 is the global slope."""
    s = r.slopes
    curves = {}
    for l in np.unique(s[:, 1]).astype(int):
        sel = s[:, 1] == l
        curves[l] = (np.concatenate([[0], s[sel, 0] + 1]), np.concatenate([[r.initial_slope], s[sel, 2]]))
    return curves


def longest(runs):
    """The most steps any of these runs planned: the shared x range of a figure's panels, so that a
    run planned shorter than the others ends visibly early instead of filling its panel."""
    return max(max(r.steps_planned for r in runs), 1)


def fig3_slopes(plt, runs, out):
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.4), squeeze=False)
    xmax = longest(runs)
    for ax, r in zip(axes.flat, runs):
        if not len(r.slopes):
            ax.set_title(f"{r.name}\n(no slopes logged)", fontsize=10)
            continue
        curves = slope_curves(r)
        L = len(curves)
        nonfinite = 0
        for k, (l, (x, y)) in enumerate(sorted(curves.items())):
            st = layer_style(plt, k, L) if l >= 0 else {"color": "k", "ls": "-", "marker": "o"}
            ax.plot(x, finite_or_nan(y), color=st["color"], ls=st["ls"], marker=st["marker"], ms=4, mfc="none",
                    markevery=markevery(len(x), k, L), label="global" if l < 0 else f"layer {l}")
            nonfinite += mark_nonfinite(ax, x, y, st["color"], slot=(k, L))
        ax.axhline(0, color="k", lw=0.6)
        ax.axhline(r.initial_slope, color="0.5", lw=0.8, ls=":", label=f"initial {r.initial_slope:g}")
        ax.set_xlim(0, xmax)
        mark_not_run(ax, r)
        if nonfinite:
            reserve_nonfinite_strip(ax)
        ax.set_xlabel("updates applied (0: the initial slope)")
        ax.set_ylabel("slope")
        ax.set_title(titled(r, longest=xmax), fontsize=10)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Figure 3: learnable leaky-ReLU slopes during training")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    return save(fig, out, "fig3_learnable_slopes", runs)


def plot_layer_entropy(plt, ax, r, M, xmax):
    """Per-layer mean entropy against steps on ax, one style per layer with the markers of the
    layers interleaved (so coinciding curves all show), over a thick grey M line behind them;
    non-finite layers in the NaN strip."""
    steps, LE = r.layer_entropy()
    L = LE.shape[1] if LE.ndim == 2 else 0
    ax.axhline(M, color="0.7", lw=3, zorder=0, label=f"M = {M:.2f}")
    nonfinite = 0
    for l in range(L):
        st = layer_style(plt, l, L)
        ax.plot(steps, finite_or_nan(LE[:, l]), color=st["color"], ls=st["ls"], marker=st["marker"], ms=4,
                mfc="none", markevery=markevery(len(steps), l, L), lw=1.3, label=f"layer {l}")
        nonfinite += mark_nonfinite(ax, steps, LE[:, l], st["color"], slot=(l, L))
    ax.set_ylim(0, M * 1.1)
    ax.set_xlim(0, xmax)
    mark_not_run(ax, r)
    if nonfinite:
        reserve_nonfinite_strip(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("mean entropy (nats)")


def fig4_layer_entropy(plt, runs, out):
    cols = min(3, len(runs))
    rows = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows + 0.4), squeeze=False)
    M = max_mean_entropy(runs[0].T)
    for ax, r in zip(axes.flat, runs):
        plot_layer_entropy(plt, ax, r, M, longest(runs))
        ax.set_title(titled(r, longest=longest(runs)), fontsize=10)
        ax.legend(fontsize=6, ncol=2, loc="lower left")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.suptitle("Figure 4: per-layer attention entropy during training (training batches)")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    return save(fig, out, "fig4_layer_entropy", runs)


def draw_counts(plt, ax, r):
    """Non-finite attention scores (circles) and FFN activations (squares) per layer against steps,
    markers only (rows exist on entropy steps and non-finite steps); a later layer's marker is
    smaller, so equal counts of several layers nest instead of hiding each other. A step whose
    counts are all 0 is one grey tick on the 0 line (logged, nothing non-finite)."""
    from matplotlib.lines import Line2D
    nf = r.nonfinite
    L = int(nf[:, 1].max()) + 1 if len(nf) else 0
    steps = np.unique(nf[:, 0])
    clean = [s for s in steps if not nf[nf[:, 0] == s, 2:].any()]
    ax.plot(clean, np.zeros(len(clean)), "|", ms=6, color="0.6")
    for l in range(L):
        color = layer_style(plt, l, L)["color"]
        size = 3 + 2.0 * (L - 1 - l)
        for col, marker in ((2, "o"), (3, "s")):
            sel = (nf[:, 1] == l) & (nf[:, col] > 0)
            ax.plot(nf[sel, 0], nf[sel, col], marker, ms=size, mfc="none", color=color)
    ax.set_yscale("symlog", linthresh=1)
    # three decades above the largest count: room for the legend above the markers
    ax.set_ylim(-0.5, max(10.0, 1000.0 * float(nf[:, 2:].max())) if len(nf) else 10.0)
    handles = [Line2D([], [], color=layer_style(plt, l, L)["color"], lw=3, label=f"layer {l}") for l in range(L)]
    handles += [Line2D([], [], marker="o", mfc="none", color="k", ls="none", label="attention scores"),
                Line2D([], [], marker="s", mfc="none", color="k", ls="none", label="FFN activations")]
    ax.legend(handles=handles, fontsize=6, ncol=2, loc="upper left")
    ax.set_xlabel("step")
    ax.set_ylabel("non-finite values")


def draw_loss_norm(ax, r):
    """Train loss and gradient norm per step (log scale), their non-finite steps in the NaN strip."""
    steps = r.train[:, 0]
    nonfinite = 0
    for k, (col, color, name) in enumerate(((1, "k", "train loss"), (3, "C1", "gradient norm"))):
        # dots on short runs, where a finite step between non-finite ones would otherwise not show
        ax.plot(steps, finite_or_nan(r.train[:, col]), ".-" if len(steps) <= 200 else "-", ms=2, color=color, lw=1,
                label=name)
        nonfinite += mark_nonfinite(ax, steps, r.train[:, col], color, size=4, slot=(k, 2))
    ax.set_yscale("log")
    if nonfinite:
        reserve_nonfinite_strip(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats), norm")
    ax.legend(fontsize=6, loc="lower left")


def mark_first_event(axes, r):
    """Rings the first non-finite value on the panel of the quantity it appeared in (the counts for
    attention scores and FFN activations, the loss panel's NaN strip for the loss and the norm),
    with its step, layer and quantity; a dotted line at that step on every panel of the row."""
    ev = r.first_nonfinite_event()
    if ev is None:
        return None
    step, what, layer, value = ev
    for a in axes:
        a.axvline(step, color="r", lw=0.8, ls=":", zorder=1)
    if what in ("att", "ffn"):
        ax, xy, coords = axes[0], (step, value), "data"
        text = f"first non-finite: step {step},\nlayer {layer} {'attention scores' if what == 'att' else 'FFN activations'} ({value:,})"
    else:
        row = 0 if what == "loss" else 1  # its row of the NaN strip (draw_loss_norm's slots)
        ax, xy, coords = axes[1], (step, 1 - STRIP * (row + 0.5) / 2), ("data", "axes fraction")
        text = f"first non-finite: step {step},\n{'the loss' if what == 'loss' else 'the gradient norm'} ({value})"
    ax.plot(*xy, "o", ms=14, mfc="none", mec="r", mew=1.5, transform=ax.transData if coords == "data" else
            ax.get_xaxis_transform(), clip_on=False, zorder=6)
    ax.annotate(text, xy=xy, xycoords=coords, xytext=(0.5, 0.55), textcoords="axes fraction", fontsize=7, color="r",
                ha="center", arrowprops={"arrowstyle": "->", "color": "r", "lw": 0.8},
                bbox={"facecolor": "white", "edgecolor": "r", "alpha": 0.9})
    return ax


def draw_paper_metrics(plt, ax_nan, ax_ent, r, M, xmax):
    """The paper's Figure 5 quantities per layer (paper.tsv, the authors' convention): NaN entries
    of the attention probabilities in one micro-batch, mean over heads (a NaN row counts T), and
    the mean entropy with torch.nansum (a NaN row counts 0, so collapse and NaN look alike)."""
    steps = r.paper_steps
    L = r.paper_nan.shape[1] if r.paper_nan.size else 0
    for l in range(L):
        st = layer_style(plt, l, L)
        kw = dict(color=st["color"], ls=st["ls"], marker=st["marker"], ms=4, mfc="none",
                  markevery=markevery(len(steps), l, L), lw=1.3, label=f"layer {l}")
        ax_nan.plot(steps, r.paper_nan[:, l, :].mean(axis=1), **kw)
        ax_ent.plot(steps, r.paper_entropy[:, l, :].mean(axis=1), **kw)
    if not L:
        for a in (ax_nan, ax_ent):
            a.text(0.5, 0.5, "no paper.tsv (a run from before it was logged)", transform=a.transAxes, ha="center")
    ax_nan.set_yscale("symlog", linthresh=1)
    ax_nan.set_ylabel("NaN probabilities per head")
    ax_ent.axhline(M, color="0.7", lw=3, zorder=0)
    ax_ent.set_ylim(0, M * 1.1)
    ax_ent.set_ylabel("mean entropy, NaN rows as 0 (nats)")
    for a in (ax_nan, ax_ent):
        a.set_xlim(0, xmax)
        a.set_xlabel("step")
        if L:
            a.legend(fontsize=6, ncol=2, loc="upper left" if a is ax_nan else "lower left")


def fig5_fixed_slopes(plt, runs, out):
    """Per fixed slope, five panels: ours (non-finite counts, loss and norm, entropy with a NaN row
    making its layer NaN) and the paper's (NaN probabilities, NaN-ignoring entropy)."""
    fig, axes = plt.subplots(len(runs), 5, figsize=(27, 3.4 * len(runs) + 0.6), squeeze=False)
    M = max_mean_entropy(runs[0].T)
    for row, r in zip(axes, runs):
        draw_counts(plt, row[0], r)
        draw_loss_norm(row[1], r)
        plot_layer_entropy(plt, row[2], r, M, longest(runs))
        row[2].legend(fontsize=6, ncol=2, loc="lower left")
        draw_paper_metrics(plt, row[3], row[4], r, M, longest(runs))
        for a, what in zip(row, ("ours: non-finite attention scores / FFN activations", "train loss, gradient norm",
                                 "ours: per-layer entropy (NaN if a row is)",
                                 "paper's: NaN attention probabilities (mean over heads)",
                                 "paper's: per-layer entropy, NaN rows as 0")):
            a.set_xlim(0, longest(runs))
            a.set_title(titled(r, f"{r.name}: {what}", longest(runs)), fontsize=8.5)
        for a in row[:2]:
            mark_not_run(a, r)
        if mark_first_event(row, r) is None:
            row[0].text(0.6, 0.72, f"no non-finite values in {r.steps_done} steps", transform=row[0].transAxes,
                        ha="center", va="center", bbox=dict(facecolor="white", edgecolor="0.7"))
    regime = run_precision(runs[0].info)
    fig.suptitle(f"Figure 5: LN-free with fixed leaky-ReLU slopes ({regime}, --on-nan {runs[0].info.get('on_nan', 'log')}); "
                 "columns 1-3 our conventions, 4-5 the paper's")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    return save(fig, out, "fig5_fixed_slopes", runs)


def run_precision(info):
    """The arithmetic a run trained in, from its run.info: the paper's fp16 regime, or the build's
    precision (the CUDA trainer is bf16 unless its name says fp32 or fp16; the CPU trainer fp32)."""
    if info.get("regime") == "fp16-autocast":
        return "fp16 autocast + loss scaling"
    trainer = os.path.basename(info.get("trainer", ""))
    if "gpt2cu" not in trainer:
        return "fp32"
    for name in ("fp32", "fp16"):
        if name in trainer:
            return name
    return "bf16"


# ---- the table ----------------------------------------------------------------------------------

def fmt(x, spec=".3f", none="-"):
    """x formatted; `none` for a missing value; NaN and inf spelled out, so a non-finite value reads
    as one, not as a missing cell."""
    if x is None:
        return none
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return format(x, spec)


def banner(allruns):
    """The first lines of results.md: what this scale is and what it can and cannot show, and how
    many runs did not finish cleanly, so no number below is read as more than it is."""
    scales = sorted({r.info.get("scale", "?") for r in allruns})
    scale = scales[0] if len(scales) == 1 else " / ".join(scales)
    planned = max((r.steps_planned * r._int("tokens_per_step", 0) for r in allruns), default=0)
    models = sorted({r.info.get("model", "?") for r in allruns})
    params = model_params(models[0]) if len(models) == 1 else None
    paper_params = model_params(PAPER_MODEL)
    size = (f"a {human(params)}-parameter model ({paper_params / params:.1f}x smaller than the paper's GPT-2 124M)"
            if params else f"model {' / '.join(models)}")
    tokens = f"{human(planned)} tokens per run ({100 * planned / PAPER_TOKENS:.2g}% of the paper's ~2.1B)"
    corpus = os.path.basename(allruns[0].info.get("corpus", "?")).split("_train_")[0]
    if scale == "tiny":
        text = (f"**Scale tiny: a pipeline test only.** {tokens} on {size}. Far too small for the paper's "
                "effects to show. These numbers test that training, logging and plotting run end to "
                "end; they say nothing about the paper's findings.")
    elif scale == "small":
        text = (f"**Scale small: not the paper's scale.** {tokens} on {size}, corpus {corpus}. It can show "
                "the direction of an effect and relative changes between these runs; it cannot reproduce the "
                "paper's absolute perplexities or the size of its effects, and effects that need a fully "
                "trained model may not have appeared yet. Compare directions and relative changes, not "
                "absolute perplexities.")
    elif scale == "full":
        same = "codeparrot" in corpus.lower()
        text = (f"**Scale full: the paper's recipe** (GPT-2 124M, T = 128, 65,536 tokens per step, one epoch), "
                f"{tokens}, corpus {corpus}. " + (
                    "Its perplexities compare with the paper's directly." if same else
                    "The paper trained on CodeParrot: on this corpus compare directions and relative changes, "
                    "not absolute perplexities."))
    else:
        text = (f"**Scale {scale}: not one of run.sh's scales (tiny, small, full).** {tokens} on {size}. "
                "Read these numbers as a test, not as a reproduction.")
    lengths = sorted({r.steps_planned for r in allruns})
    if len(lengths) > 1:
        text += (f" The runs planned different lengths ({' / '.join(map(str, lengths))} steps); a change is computed "
                 "only between runs of equal length.")
    unclean = [r for r in allruns if not r.outcome()[0]]
    if unclean:
        text += (f" {len(unclean)} of {len(allruns)} runs did not finish cleanly ("
                 + ", ".join(f"{r.experiment}/{r.tag}: {r.outcome()[1]}" for r in unclean)
                 + "): see Notes; no change versus LN+GELU is computed from them.")
    return ["> " + text, ""]


def comparable(r, ref):
    """Why r's perplexity cannot be compared with the reference's ('' when it can): a change is
    computed only between cleanly finished runs trained on the same number of tokens."""
    if ref is None:
        return "no LN+GELU run"
    for run in (r, ref):
        ok, short, _ = run.outcome()
        if not ok:
            return f"{run.name}: {short}"
    if r.tokens != ref.tokens:
        return f"{human(r.tokens or 0)} tokens vs {human(ref.tokens or 0)} for {ref.name}"
    return ""


def wall(r):
    """The wall time run.sh wrote into status."""
    w = [f for f in r.status.split() if f.startswith("wall_s=")]
    return w[0][7:] + " s" if w else "-"


def eval_cell(r):
    """The final eval loss; with its step when that is not the planned last step."""
    step, loss = r.final_eval
    if step is None:
        return "-"
    text = fmt(loss, ".4f")
    return text if step == r.steps_planned else f"{text} (step {step})"


def ppl_cell(r):
    """exp of the final eval loss ('-' when the run has no eval)."""
    step, loss = r.final_eval
    return "-" if step is None else fmt(perplexity(loss))


def perplexity_rows(main, slopes):
    """The eval-perplexity table, and the LN-free ReLU vs GELU line, both only from comparable runs."""
    ref = next((r for r in main if r.tag == "ln-gelu"), None)
    lines = ["## Eval perplexity, exp(final eval loss)", "",
             "| model | tokens | eval loss | PPL | change vs LN+GELU | paper PPL | paper change | run | wall time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in main + slopes:
        why = comparable(r, ref)
        chg = "" if why else f"{change_pct(perplexity(r.final_eval[1]), perplexity(ref.final_eval[1])):+.1f}%"
        p = PAPER.get(r.tag)
        lines.append(f"| {r.name} | {human(r.tokens) if r.tokens else '-'} | {eval_cell(r)} | {ppl_cell(r)} | "
                     f"{chg} | {fmt(p[0] if p else None)} | {fmt(p[1] if p else None, '+.1f')}{'%' if p else ''} | "
                     f"{r.outcome()[1]} | {wall(r)} |")
    byname = {r.tag: r for r in main}
    if "none-gelu" in byname and "none-relu" in byname:
        gelu, relu = byname["none-gelu"], byname["none-relu"]
        why = comparable(relu, gelu)
        paper = f"(paper: {change_pct(PAPER['none-relu'][0], PAPER['none-gelu'][0]):+.1f}%)"
        if why:
            lines += ["", f"LN-free ReLU's perplexity versus LN-free GELU's: not computed ({why}) {paper}."]
        else:
            chg = change_pct(perplexity(relu.final_eval[1]), perplexity(gelu.final_eval[1]))
            lines += ["", f"LN-free ReLU's perplexity versus LN-free GELU's: {chg:+.1f}% {paper}."]
    return lines + [""]


def share_rows(shown, T):
    """Head share per entropy bin at each run's last logged step (its state beside that step)."""
    M, lnT = max_mean_entropy(T), math.log(T)
    lines = ["## Head share per entropy bin (training batch, last logged step)", "",
             f"T = {T}: M = ln(T!)/T = {M:.3f}, ln T = {lnT:.3f}. Bins [0,X/4), [X/4,X/2), [X/2,3X/4), [3X/4,X] "
             "for X = M and X = ln T, low to high, in % of the heads; the paper's shares are for X = M.", "",
             "| model | step | heads | M bins (ours) | M bins (paper) | ln T bins (ours) |",
             "|---|---|---|---|---|---|"]
    for r in shown:
        step, E = r.final_entropy()
        if E is None:
            lines.append(f"| {r.name} | - | - | - | - | - |")
            continue
        ok, short, _ = r.outcome()
        counts, bad = bin_counts(E, M)
        heads = f"{int(counts.sum())}" + (f" (+{bad} non-finite)" if bad else "")
        sm = " / ".join(f"{v:.1f}" for v in bin_shares(E, M))
        sl = " / ".join(f"{v:.1f}" for v in bin_shares(E, lnT))
        p = " / ".join(str(v) for v in PAPER[r.tag][2]) if r.tag in PAPER else "-"
        lines.append(f"| {r.name} | {step}{'' if ok else f' ({short})'} | {heads} | {sm} | {p} | {sl} |")
    return lines + [""]


def slope_rows(runs):
    lines = ["## Learnable slopes, after the last step", "", "| model | initial | slopes | run |", "|---|---|---|---|"]
    for r in runs:
        s = r.slopes
        if not len(s):
            lines.append(f"| {r.name} | {r.initial_slope:g} | - | {r.outcome()[1]} |")
            continue
        last = s[s[:, 0] == s[:, 0].max()]
        vals = ", ".join(("global " if l < 0 else "") + f"{v:.4f}" for l, v in zip(last[:, 1], last[:, 2]))
        lines.append(f"| {r.name} (step {int(s[:, 0].max())}) | {r.initial_slope:g} | {vals} | {r.outcome()[1]} |")
    return lines + [""]


def fixed_rows(runs):
    names = {"att": "attention scores", "ffn": "FFN activations", "loss": "loss", "norm": "gradient norm"}
    modes = " / ".join(sorted({r.info.get("on_nan", "?") for r in runs}))
    lines = [f"## Fixed slopes, LN-free (--on-nan {modes})", "",
             "| model | steps | first non-finite step | first in | non-finite steps | last eval loss | PPL | run | wall time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        ev = r.first_nonfinite_event()
        where = "-" if ev is None else (f"layer {ev[2]} " if ev[2] is not None else "") + names[ev[1]]
        lines.append(f"| {r.name} | {r.steps_done} | {ev[0] if ev else 'none'} | {where} | {len(r.nonfinite_steps())} | "
                     f"{eval_cell(r)} | {ppl_cell(r)} | {r.outcome()[1]} | {wall(r)} |")
    return lines + [""]


def results_md(runs, notes):
    """results.md: the scale's banner, perplexities, head shares, slopes, fixed-slope failures; the
    paper beside ours. Cells that a run's state makes meaningless are left empty."""
    allruns = [r for rs in runs.values() for r in rs]
    lines = ["# Results", ""] + banner(allruns) + [label(allruns), ""]
    main, slopes = runs.get("main", []), runs.get("slopes", [])
    if main:
        lines += perplexity_rows(main, slopes)
    if main + slopes:
        lines += share_rows(main + slopes, allruns[0].T)
    if slopes:
        lines += slope_rows(slopes)
    if runs.get("fixed-slopes"):
        lines += fixed_rows(runs["fixed-slopes"])
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
    with warnings.catch_warnings():  # nan-only rows make numpy and matplotlib warn; they are drawn as NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        for title, draw, rs, why in figures:
            if rs:
                draw(plt, rs, out)
            else:
                notes.append(f"{title} skipped: {why}.")
                print(f"note: {title} skipped: {why}")
    for rs in runs.values():
        for r in rs:
            ok, _, long = r.outcome()
            if not ok or long != "complete":
                notes.append(f"{r.experiment}/{r.tag}: {long}" + ("" if ok else f" (status: {r.status or 'none'})"))
    path = os.path.join(out, "results.md")
    with open(path, "w") as f:
        f.write(results_md(runs, notes))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
