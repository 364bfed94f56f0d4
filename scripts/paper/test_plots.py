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


def make_run(root, exp, tag, tel_final, entropy_rows, T=4, steps=12, nonfinite="", slopes="", bad_step=None):
    """A run directory as run.sh leaves it: 2 layers x 2 heads, `steps` steps of 512 tokens."""
    d = os.path.join(root, exp, tag)
    write(os.path.join(d, "run.info"), f"scale=unit\nexperiment={exp}\ntag={tag}\nmodel=L2H2C8T{T}\nT={T}\n"
          f"tokens_per_step=512\nsteps={steps}\ntrainer=./train_gpt2\ndevice=CPU: test\ncommit=abc1234\n")
    log = []
    for s in range(steps):
        if s == 0:
            log.append("s:0 tel:2.000000")
        loss = "nan" if bad_step is not None and s >= bad_step else "3.000000"
        log.append(f"s:{s} trl:{loss} lr:0.001000 norm:{'nan' if loss == 'nan' else '0.500000'}")
    log.append(f"s:{steps} tel:{tel_final}")
    write(os.path.join(d, "main.log"), "\n".join(log) + "\n")
    write(os.path.join(d, "entropy.tsv"), "step\tlayer\thead\tentropy\n" + entropy_rows)
    write(os.path.join(d, "nonfinite.tsv"), "step\tlayer\tatt\tffn\n" + nonfinite)
    if slopes:
        write(os.path.join(d, "slopes.tsv"), "step\tlayer\tslope\n" + slopes)
    write(os.path.join(d, "status"), "complete wall_s=1.5 device=CPU: test\n")
    return d


def entropy_rows(step, values):
    """values: [l0h0, l0h1, l1h0, l1h1]"""
    return "".join(f"{step}\t{i // 2}\t{i % 2}\t{v}\n" for i, v in enumerate(values))


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
        make_run(root, "fixed-slopes", "none-lrelu-0.2", "nan", nf_rows, bad_step=8,
                 nonfinite="0\t0\t0\t0\n0\t1\t0\t0\n7\t0\t0\t0\n7\t1\t5\t12\n8\t0\t9\t30\n8\t1\t40\t40\n")
        make_run(root, "fixed-slopes", "none-lrelu-0.05", "1.500000", rows, nonfinite="0\t0\t0\t0\n0\t1\t0\t0\n")

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
        check("results.md: the last per-layer slopes", "| LN-free, learnable slope per layer (step 11) | -0.0010, -0.0120 |" in md)

        # ---- every figure, from logs with nan entropies and non-finite counts
        out = os.path.join(root, "figs")
        rc = plots.main([root, "--out", out])
        names = ["fig1_entropy_heatmaps", "fig2_entropy_bins_eval", "fig3_learnable_slopes", "fig4_layer_entropy", "fig5_fixed_slopes"]
        check("plots.main on hand-made logs: exit 0", rc == 0)
        check("plots.main: every PNG and PDF written", all(os.path.getsize(os.path.join(out, f"{n}.{e}")) > 1000
                                                           for n in names for e in ("png", "pdf")))
        check("plots.main: an empty root is an error", plots.main([os.path.join(root, "nothing")]) == 1)

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
