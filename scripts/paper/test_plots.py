#!/usr/bin/env python3
"""test_plots.py: unit tests of scripts/paper/plots.py on hand-made logs with known answers:
M = ln(T!)/T, the entropy bins (edges, values at and above M, non-finite heads), perplexity and
its change, reading main.log / entropy.tsv / slopes.tsv / nonfinite.tsv / run.info, tokens
trained, the first non-finite step, the results table, and every figure drawn from logs with
non-finite values in them. Run by scripts/paper/test_paper.sh; last line "N passed, M failed".
"""
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plots  # noqa: E402

passed = failed = 0


def check(what, cond):
    global passed, failed
    if cond:
        passed += 1
        print(f"  ok   {what}")
    else:
        failed += 1
        print(f"  FAIL {what}")


def close(a, b, tol=1e-6):
    return abs(a - b) <= tol


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def make_run(root, exp, tag, tel_final, entropy_rows, T=4, steps=12, nonfinite="", slopes="", bad_step=None,
             on_nan="stop", status="complete wall_s=1.5 device=CPU: test", act="gelu", scale="unit", done=None,
             model=None, tps=512, corpus="data/pycode_train_*.bin"):
    """A run directory as run.sh leaves it: 2 layers x 2 heads, `steps` steps of 512 tokens planned,
    `done` of them logged (all by default; fewer, without a final eval, for a killed run);
    status None: no status file (killed)."""
    d = os.path.join(root, exp, tag)
    write(os.path.join(d, "run.info"), f"scale={scale}\nexperiment={exp}\ntag={tag}\nact={act}\nmodel={model or f'L2H2C8T{T}'}\n"
          f"T={T}\ntokens_per_step={tps}\nsteps={steps}\non_nan={on_nan}\ncorpus={corpus}\ntrainer=./train_gpt2\n"
          "device=CPU: test\ncommit=abc1234\n")
    log = []
    for s in range(steps if done is None else done):
        if s == 0:
            log.append("s:0 tel:2.000000")
        loss = "nan" if bad_step is not None and s >= bad_step else "3.000000"
        log.append(f"s:{s} trl:{loss} lr:0.001000 norm:{'nan' if loss == 'nan' else '0.500000'}")
    if done is None:
        log.append(f"s:{steps} tel:{tel_final}")
    write(os.path.join(d, "main.log"), "\n".join(log) + "\n")
    write(os.path.join(d, "entropy.tsv"), "step\tlayer\thead\tentropy\n" + entropy_rows)
    write(os.path.join(d, "nonfinite.tsv"), "step\tlayer\tatt\tffn\n" + nonfinite)
    if slopes:
        write(os.path.join(d, "slopes.tsv"), "step\tlayer\tslope\n" + slopes)
    if status is not None:
        write(os.path.join(d, "status"), status + "\n")
    return d


def entropy_rows(step, values):
    """values: [l0h0, l0h1, l1h0, l1h1]"""
    return "".join(f"{step}\t{i // 2}\t{i % 2}\t{v}\n" for i, v in enumerate(values))


def table_rows(md, title):
    """The cells of each body row of results.md's table under the section starting with title."""
    sec = next((x for x in md.split("\n## ") if x.startswith(title)), "")
    return [[c.strip() for c in l.strip().strip("|").split("|")] for l in sec.splitlines()
            if l.startswith("| ") and not l.startswith("| model")]


def test_outcomes(root, M):
    """Runs that stopped, were killed, or went on through non-finite steps: their state, the table
    cells left empty, the banner."""
    rows = entropy_rows(0, [M, M, M, M]) + entropy_rows(10, [0.1, 0.2, 0.5, M])
    nan_rows = entropy_rows(0, [M, M, M, M]) + entropy_rows(5, ["nan", "nan", "nan", "nan"])
    make_run(root, "main", "ln-gelu", f"{math.log(2):.6f}", rows)
    make_run(root, "main", "ln-relu", "-", nan_rows, status=None, done=6, on_nan="log")       # killed
    make_run(root, "main", "none-gelu", "-", rows[:60], bad_step=5, done=6,                   # stopped
             status="stopped wall_s=0.5 non-finite value under --on-nan stop (see train.out)")
    make_run(root, "main", "none-relu", f"{math.log(3):.6f}", rows)
    make_run(root, "fixed-slopes", "none-lrelu-0.2", "nan", rows, bad_step=8, on_nan="log")  # old run.sh: complete
    make_run(root, "fixed-slopes", "none-lrelu-0.3", "nan", rows, bad_step=8, on_nan="log",
             status="nonfinite wall_s=1.5 device=CPU: test non-finite values in 4 steps")
    make_run(root, "fixed-slopes", "none-lrelu-0.1", "1.000000", rows, on_nan="skip", nonfinite="3\t0\t2\t0\n",
             status="complete wall_s=1.5 device=CPU: test skipped=1")
    runs = plots.find_runs(root)
    by = {r.tag: r for rs in runs.values() for r in rs}
    out = {t: r.outcome() for t, r in by.items()}
    check("outcome: a clean run is complete", out["ln-gelu"] == (True, "complete", "complete"))
    check("outcome: no status file is unfinished, 6 of 12 steps",
          out["ln-relu"][:2] == (False, "unfinished") and "6 of 12 steps" in out["ln-relu"][2])
    check("outcome: status stopped, at the first non-finite step (5)",
          out["none-gelu"][:2] == (False, "stopped") and "at step 5 " in out["none-gelu"][2])
    check("outcome: 'complete' under --on-nan log with non-finite steps is not complete",
          out["none-lrelu-0.2"][:2] == (False, "non-finite") and "non-finite parameters at the end" in out["none-lrelu-0.2"][2])
    check("outcome: run.sh's status nonfinite is not complete", out["none-lrelu-0.3"][:2] == (False, "non-finite"))
    check("outcome: non-finite steps skipped (--on-nan skip) leave the run complete",
          out["none-lrelu-0.1"][:2] == (True, "complete") and "1 non-finite steps skipped" in out["none-lrelu-0.1"][2])
    check("first non-finite event of a stopped run: the loss at step 5",
          by["none-gelu"].first_nonfinite_event()[:3] == (5, "loss", None))

    md = plots.results_md(runs, [])
    ppl = {r[0]: r for r in table_rows(md, "Eval perplexity")}
    check("results.md: stopped and unfinished runs get an empty change cell and their state",
          ppl["LN-free GELU"][4] == "" and ppl["LN-free GELU"][7] == "stopped"
          and ppl["LN + ReLU"][4] == "" and ppl["LN + ReLU"][7] == "unfinished")
    check("results.md: a clean run beside them keeps its change (+50.0%)", ppl["LN-free ReLU"][4] == "+50.0%")
    check("results.md: the last eval of a stopped run is labelled with its step",
          ppl["LN-free GELU"][2] == "2.0000 (step 0)")
    check("results.md: LN-free ReLU vs GELU not computed when GELU stopped",
          "LN-free ReLU's perplexity versus LN-free GELU's: not computed (LN-free GELU: stopped)" in md)
    fixed = {r[0]: r for r in table_rows(md, "Fixed slopes")}
    check("results.md: a diverged --on-nan log run: first non-finite step 8 in the loss, eval NaN, not complete",
          fixed["LN-free, fixed slope 0.2"][2:4] == ["8", "loss"] and fixed["LN-free, fixed slope 0.2"][5] == "NaN"
          and fixed["LN-free, fixed slope 0.2"][7] == "non-finite")
    check("results.md: the banner names the scale and the runs that did not finish",
          md.split("\n")[2].startswith("> **Scale unit: not one of run.sh's scales")
          and "4 of 7 runs did not finish cleanly" in md)
    check("results.md: the head-share row of a stopped run carries its state",
          any(r[0] == "LN-free GELU" and r[1] == "0 (stopped)" for r in table_rows(md, "Head share")))
    # the reference itself stopped: no change at all
    ref_root = os.path.join(root, "refstop")
    make_run(ref_root, "main", "ln-gelu", "-", rows[:60], bad_step=5, done=6, status="stopped wall_s=0.5")
    make_run(ref_root, "main", "none-relu", f"{math.log(3):.6f}", rows)
    md2 = plots.results_md(plots.find_runs(ref_root), [])
    check("results.md: with LN+GELU stopped no change is computed",
          all(r[4] == "" for r in table_rows(md2, "Eval perplexity")))
    return runs


def test_banner(root):
    """The banner says what each scale can show, with the tokens and model size measured."""
    def banner(scale, model, steps, tps, corpus="data/pycode_train_*.bin"):
        d = os.path.join(root, scale + model)
        make_run(d, "main", "ln-gelu", "2.0", "", scale=scale, model=model, steps=steps, tps=tps, corpus=corpus)
        return plots.banner([plots.Run(os.path.join(d, "main", "ln-gelu"), "main", "ln-gelu")])[0]
    small = banner("small", "L6H6C384T128", 2000, 32768)
    check("banner, small: 65.5M tokens, 3.1% of the paper's, a 30M model 4.1x smaller, directions not absolutes",
          "65.5M tokens per run (3.1% of the paper's ~2.1B)" in small and "30M-parameter model (4.1x smaller" in small
          and "Compare directions and relative changes, not absolute perplexities." in small)
    tiny = banner("tiny", "L2H2C64T128", 60, 512)
    check("banner, tiny: a pipeline test only", tiny.startswith("> **Scale tiny: a pipeline test only.**")
          and "say nothing about the paper's findings" in tiny)
    full = banner("full", "d12", 20, 65536, corpus="data/codeparrot_train_*.bin")
    check("banner, full on CodeParrot: the paper's recipe, compare directly",
          "Scale full: the paper's recipe" in full and "compare with the paper's directly" in full)
    check("model_params: d12 = 124,439,808 (GPT-2 124M)", plots.model_params("d12") == 124439808)
    check("model_params: L2H2C64T128 = 3,324,736 (the trainer's 3,327,746 less vocabulary padding and 2 slopes)",
          plots.model_params("L2H2C64T128") == 3324736)
    check("model_params: a file name is not a descriptor", plots.model_params("gpt2_124M.bin") is None)


def test_figures(runs, states):
    """What the figures draw, read back from the matplotlib objects."""
    import re
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = None  # draw only: nothing written
    fig = plots.fig1_heatmaps(plt, states["main"], out)
    titles = [ax.get_title(loc="left") for ax in fig.axes[:4]]
    check("fig1: panel letters (a)-(d)", [t[:3] for t in titles] == ["(a)", "(b)", "(c)", "(d)"])
    check("fig1: a stopped run's panel says so", "[STOPPED AT STEP 5]" in titles[2])
    bar = [t.get_text() for t in fig.axes[-1].get_yticklabels()]
    check("fig1: colour bar ticks at 0, M/4 ... M, two decimals and % of M",
          len(bar) == 5 and all(re.fullmatch(r"\d\.\d\d \(\d+%\)", t) for t in bar) and bar[-1].endswith("(100%)"))
    check("fig1: a NaN head is written NaN", sum(t.get_text() == "NaN" for t in fig.axes[1].texts) == 4)

    fig = plots.fig2_bins_eval(plt, states["main"], out)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    check("fig2: the paper's ticks labelled per model", all(f"paper: {n}" in legend for n in ("LN + GELU", "LN-free ReLU")))
    ev = fig.axes[2]
    labels = [t.get_text() for t in ev.get_legend().get_texts()]
    check("fig2: the stopped run is named stopped in the eval legend", "LN-free GELU [stopped at step 5]" in labels)
    check("fig2: the eval axis starts after the first evaluation (2.0), showing the final spread",
          ev.get_ylim()[1] < 2.0 and ev.get_ylim()[0] < math.log(2))
    check("fig2: a dotted line where the stopped run ended",
          any(l.get_linestyle() == ":" and list(l.get_xdata()) == [5 * 512, 5 * 512] for l in ev.lines))

    fig = plots.fig3_slopes(plt, runs["slopes"], out)
    x, y = fig.axes[0].lines[0].get_data()
    check("fig3: the slope curve starts at the initial slope at update 0, slopes.tsv's step 0 at update 1",
          (x[0], y[0]) == (0, 0.01) and x[1] == 1 and close(y[1], 0.01))

    fig = plots.fig4_layer_entropy(plt, runs["main"], out)
    ax = fig.axes[0]
    layer_lines = [l for l in ax.lines if l.get_label().startswith("layer")]
    styles = {(l.get_color(), l.get_linestyle(), l.get_marker()) for l in layer_lines}
    m_line = [l for l in ax.lines if l.get_label().startswith("M =")]
    check("fig4: each layer has its own colour, line style and marker, drawn over the M line",
          len(layer_lines) == 2 and len(styles) == 2 and len(m_line) == 1
          and all(l.get_zorder() > m_line[0].get_zorder() for l in layer_lines))

    fig = plots.fig5_fixed_slopes(plt, runs["fixed-slopes"], out)
    row = fig.axes[5:10]  # the 0.2 run: first non-finite in layer 1's attention scores at step 7
    titles = [a.get_title() for a in row]
    check("fig5: five panels per run, each saying whose convention it draws (ours / paper's)",
          len(fig.axes) % 5 == 0 and all(("ours:" in t) or ("paper's:" in t) or ("loss" in t) for t in titles)
          and sum("paper's:" in t for t in titles) == 2 and "columns 1-3 our conventions, 4-5 the paper's" in fig._suptitle.get_text())
    notes = [t.get_text() for t in row[0].texts if "first non-finite" in t.get_text()]
    check("fig5: the first non-finite value marked on the counts panel: step 7, layer 1 attention scores",
          len(notes) == 1 and "step 7" in notes[0] and "layer 1 attention scores" in notes[0])
    check("fig5: ... and not on the loss panel", not any("first non-finite" in t.get_text() for t in row[1].texts))
    ent = row[2]
    strip = [l for l in ent.lines if l.get_marker() == "x" and l.get_transform() != ent.transData]
    curves = [l for l in ent.lines if l.get_label() == "layer 0"]
    check("fig5: NaN entropies drawn as x in the NaN strip, one row per layer, and as NaN (no line) in the curve",
          len(strip) == 2 and len({l.get_ydata()[0] for l in strip}) == 2 and all(l.get_ydata()[0] > 0.9 for l in strip)
          and math.isnan(curves[0].get_ydata()[-1]))
    fig = plots.fig5_fixed_slopes(plt, states["fixed-slopes"], out)
    notes = [t.get_text() for t in fig.axes[6].texts if "first non-finite" in t.get_text()]
    check("fig5: a loss-first divergence marked on the loss panel (step 8)", len(notes) == 1 and "step 8,\nthe loss" in notes[0])


def main():
    # ---- M and the bins
    check("M(128) = ln(128!)/128 = 3.878 (the paper's value)", round(plots.max_mean_entropy(128), 3) == 3.878)
    check("M(4) = ln(24)/4", close(plots.max_mean_entropy(4), math.log(24) / 4))
    check("M(1) = 0 (one position: one key)", close(plots.max_mean_entropy(1), 0.0))
    M = plots.max_mean_entropy(4)
    counts, bad = plots.bin_counts([0.0, M / 4, M / 2 - 1e-9, 3 * M / 4, M, M + 1e-6, float("nan")], M)
    check("bins: 0 and M/4-edges land in [0,M/4), [M/4,M/2), ...", list(counts) == [1, 2, 0, 3])
    check("bins: a nan head is counted apart", bad == 1)
    shares = plots.bin_shares([0.1, 0.2, 0.5, M], M)
    check("shares: one head per M bin = 25/25/25/25", all(close(s, 25.0) for s in shares))
    shares_ln = plots.bin_shares([0.1, 0.2, 0.5, M], math.log(4))
    check("shares: the same heads in ln T bins = 50/25/25/0", [round(s, 6) for s in shares_ln] == [50, 25, 25, 0])
    check("shares sum to 100", close(sum(plots.bin_shares([0.3, 0.31, 3.0, 1.7, 0.9, 2.2, 3.87], 3.878)), 100.0))

    # ---- perplexity
    check("perplexity(ln 3) = 3", close(plots.perplexity(math.log(3)), 3.0))
    check("perplexity overflows to inf", plots.perplexity(1e6) == math.inf)
    check("perplexity(nan) is nan", math.isnan(plots.perplexity(float("nan"))))
    check("change_pct(3, 2) = +50%", close(plots.change_pct(3.0, 2.0), 50.0))
    paper_change = plots.change_pct(plots.PAPER["none-gelu"][0], plots.PAPER["ln-gelu"][0])
    check("the paper's LN-free GELU change is +18.9%", round(paper_change, 1) == 18.9)

    with tempfile.TemporaryDirectory() as root:
        # ---- a hand-made experiment tree
        rows = entropy_rows(0, [M, M, M, M]) + entropy_rows(10, [0.1, 0.2, 0.5, M])
        ref = make_run(root, "main", "ln-gelu", f"{math.log(2):.6f}", rows)
        make_run(root, "main", "none-relu", f"{math.log(3):.6f}", rows)
        make_run(root, "slopes", "none-lrelu-layer", "1.000000", rows,
                 slopes="".join(f"{s}\t{l}\t{0.01 - 0.001 * s * (l + 1)}\n" for s in range(12) for l in range(2)))
        make_run(root, "slopes", "none-lrelu-global", "1.000000", rows,
                 slopes="".join(f"{s}\t-1\t{0.01 - 0.0005 * s}\n" for s in range(12)))
        nf_rows = entropy_rows(0, [M, M, M, M]) + entropy_rows(5, [M, M, 0.01, 0.0]) + entropy_rows(10, ["nan", "-nan", "nan", "nan"])
        make_run(root, "fixed-slopes", "none-lrelu-0.2", "nan", nf_rows, bad_step=8, on_nan="log",
                 nonfinite="0\t0\t0\t0\n0\t1\t0\t0\n7\t0\t0\t0\n7\t1\t5\t12\n8\t0\t9\t30\n8\t1\t40\t40\n")
        make_run(root, "fixed-slopes", "none-lrelu-0.05", "1.500000", rows, nonfinite="0\t0\t0\t0\n0\t1\t0\t0\n", on_nan="log")

        runs = plots.find_runs(root)
        check("find_runs: all three experiments", sorted(runs) == ["fixed-slopes", "main", "slopes"])
        check("find_runs: main models in the paper's order", [r.tag for r in runs["main"]] == ["ln-gelu", "none-relu"])
        check("find_runs: fixed slopes sorted by slope", [r.tag for r in runs["fixed-slopes"]] == ["none-lrelu-0.05", "none-lrelu-0.2"])
        check("find_runs: per-layer slope before global", [r.tag for r in runs["slopes"]] == ["none-lrelu-layer", "none-lrelu-global"])
        r = plots.Run(ref, "main", "ln-gelu")
        check("Run: T from run.info", r.T == 4)
        check("Run: steps done = 12, tokens = 12 x 512", r.steps_done == 12 and r.tokens == 6144)
        check("Run: final eval (step 12, ln 2)", r.final_eval[0] == 12 and close(r.final_eval[1], math.log(2), 1e-6))
        step, E = r.final_entropy()
        check("Run: final entropy at step 10, shape (2, 2)", step == 10 and E.shape == (2, 2) and close(E[1, 0], 0.5))
        steps, LE = r.layer_entropy()
        check("Run: per-layer mean entropy", list(steps) == [0, 10] and close(LE[1, 0], 0.15) and close(LE[1, 1], (0.5 + M) / 2, 1e-6))
        check("Run: no non-finite step in a clean run", r.first_nonfinite_step() is None)
        bad_run = [x for x in runs["fixed-slopes"] if x.tag == "none-lrelu-0.2"][0]
        check("Run: first non-finite step from nonfinite.tsv (7, before the nan loss at 8)", bad_run.first_nonfinite_step() == 7)
        check("Run: -nan and nan entropies read as nan", bool(all(math.isnan(v) for v in bad_run.entropy[-1].ravel())))

        # ---- the table
        md = plots.results_md(runs, [])
        row = [l for l in md.splitlines() if l.startswith("| LN-free ReLU |")]
        check("results.md: LN-free ReLU row has PPL 3.000 and +50.0% vs LN+GELU (PPL 2)",
              len(row) >= 2 and "| 3.000 |" in row[0] and "+50.0%" in row[0] and "| 2.936 |" in row[0])
        check("results.md: the head-share row 25/25/25/25 (M) and 50/25/25/0 (ln T)",
              any("25.0 / 25.0 / 25.0 / 25.0" in l and "50.0 / 25.0 / 25.0 / 0.0" in l for l in row))
        check("results.md: the fixed slope 0.2 fails first at step 7",
              any(l.startswith("| LN-free, fixed slope 0.2 | 12 | 7 |") for l in md.splitlines()))
        check("results.md: the last per-layer slopes, beside the initial one",
              "| LN-free, learnable slope per layer (step 11) | 0.01 | -0.0010, -0.0120 | complete |" in md)

        # ---- every figure, from logs with nan entropies and non-finite counts
        out = os.path.join(root, "figs")
        rc = plots.main([root, "--out", out])
        names = ["fig1_entropy_heatmaps", "fig2_entropy_bins_eval", "fig3_learnable_slopes", "fig4_layer_entropy", "fig5_fixed_slopes"]
        check("plots.main on hand-made logs: exit 0", rc == 0)
        check("plots.main: every PNG and PDF written", all(os.path.getsize(os.path.join(out, f"{n}.{e}")) > 1000
                                                           for n in names for e in ("png", "pdf")))
        check("plots.main: an empty root is an error", plots.main([os.path.join(root, "nothing")]) == 1)

        states = test_outcomes(os.path.join(root, "states"), M)
        test_banner(os.path.join(root, "banner"))
        test_figures(runs, states)

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
