#!/usr/bin/python3
"""The warmup study's three figures, from a sweep's table (tools/sweep.py) and its runs' logs.

    /usr/bin/python3 tools/plot_study.py SWEEP_DIR_OR_RESULTS_JSON [-o OUT_DIR] [--early-steps N]

  loss_vs_warmup.png  final validation loss against warmup length, one line per group (optimizer) at its
                      best learning rate for each warmup (the learning rate is written beside each point)
  loss_vs_lr.png      final validation loss against learning rate, one panel per warmup, one line per group
  early_updates.png   the global update l2 norm, and the angle and RRC (means over the weight matrices) over
                      the first N steps, without warmup (solid) and with the group's best warmup (dashed),
                      both at the learning rate that is best with that warmup
A configuration is the mean over its seeds; it counts as diverged when any seed diverged. Diverged runs are
drawn as x at the top edge of a panel. OUT_DIR defaults to SWEEP_DIR/plots. Prints what each figure shows.
"""
import argparse
import json
import os
import sys

import run_log  # noqa: E402

run_log.require_modules("matplotlib", "numpy")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
# Tick labels as the values themselves: an offset ("+1.0002e1" beside the axis) makes noise look like swings.
matplotlib.rcParams["axes.formatter.useoffset"] = False
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

EARLY_MEASURES = [("update_norm", "update l2 norm, all tensors"), ("angle", "angle (rad), mean over matrices"),
                  ("rrc", "RRC, mean over linear layers")]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", help="the sweep's folder or its results.json")
    p.add_argument("-o", "--out", help="folder for the PNGs (default: SWEEP_DIR/plots)")
    p.add_argument("--early-steps", type=int, default=200, help="steps shown in early_updates.png (default 200)")
    return p.parse_args(argv)


def percent(frac):
    return f"{round(frac * 100, 2):g}%"


class Study:
    """The table's runs as configurations: group x warmup x learning rate, averaged over seeds."""

    def __init__(self, rows, sweep_dir):
        self.sweep_dir = sweep_dir
        usable = [r for r in rows if r["status"] in ("ok", "diverged") and r.get("warmup_frac") is not None]
        self.skipped = len(rows) - len(usable)
        self.groups = list(dict.fromkeys(r["group"] for r in usable))
        self.warmups = sorted({round(r["warmup_frac"], 6) for r in usable})
        self.configs = {}  # (group, warmup, lr) -> [rows over seeds]
        for r in usable:
            self.configs.setdefault((r["group"], round(r["warmup_frac"], 6), r["lr"]), []).append(r)
        self.colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(self.groups)}

    def loss(self, key):
        """Mean final validation loss over the seeds, or None when any seed diverged."""
        runs = self.configs[key]
        if any(r["diverged"] or r.get("final_val_loss") is None for r in runs):
            return None
        return sum(r["final_val_loss"] for r in runs) / len(runs)

    def lrs(self, group, warmup):
        return sorted(lr for g, w, lr in self.configs if g == group and w == warmup)

    def best(self, group, warmup):
        """(lr, loss) of the best learning rate; (None, None) when every one diverged or none ran."""
        scored = [(self.loss((group, warmup, lr)), lr) for lr in self.lrs(group, warmup)]
        finite = [(loss, lr) for loss, lr in scored if loss is not None]
        return (min(finite)[1], min(finite)[0]) if finite else (None, None)

    def finite_losses(self):
        return [x for x in (self.loss(k) for k in self.configs) if x is not None]

    def run_dir(self, group, warmup, lr):
        runs = self.configs.get((group, warmup, lr))
        return os.path.join(self.sweep_dir, min(runs, key=lambda r: r.get("seed") or 0)["dir"]) if runs else None


def loss_limits(losses):
    """y limits that show every finite loss, with room at the top for the diverged markers."""
    low, high = min(losses), max(losses)
    pad = 0.08 * (high - low) if high > low else 0.1
    return low - pad, high + 2 * pad


def mark_diverged(ax, xs, colour, top):
    if xs:
        ax.scatter(xs, [top] * len(xs), marker="x", s=60, color=colour, clip_on=False, zorder=5)


def plot_loss_vs_warmup(study, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    limits = loss_limits(study.finite_losses())
    top = limits[1]
    summary = []
    for group in study.groups:
        points, diverged, text = [], [], []
        for i, warmup in enumerate(study.warmups):
            lr, loss = study.best(group, warmup)
            if lr is not None:
                points.append((i, loss))
                ax.annotate(f"{lr:.0e}".replace("e-0", "e-"), (i, loss), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=study.colours[group])
                text.append(f"{percent(warmup)} {loss:.4f} (lr {lr:g})")
            elif study.lrs(group, warmup):
                diverged.append(i)
                text.append(f"{percent(warmup)} diverged")
        if points:
            ax.plot(*zip(*points), marker="o", color=study.colours[group], label=group)
        mark_diverged(ax, diverged, study.colours[group], top)
        summary.append(f"{group}: " + ", ".join(text))
    ax.set_xticks(range(len(study.warmups)), [percent(w) for w in study.warmups])
    ax.set_ylim(*limits)
    ax.set_xlabel("warmup (share of the training steps)")
    ax.set_ylabel("final validation loss (best learning rate)")
    ax.set_title("Final loss against warmup length, each optimizer at its best learning rate\n(x at the top: every learning rate diverged)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return "; ".join(summary)


def plot_loss_vs_lr(study, path):
    n = len(study.warmups)
    fig, axes = plt.subplots(1, n, figsize=(max(7, 3.6 * n + 1), 4), squeeze=False, sharey=True)
    limits = loss_limits(study.finite_losses())
    diverged_count = 0
    for ax, warmup in zip(axes[0], study.warmups):
        for group in study.groups:
            lrs = study.lrs(group, warmup)
            losses = [study.loss((group, warmup, lr)) for lr in lrs]
            ax.plot([lr for lr, x in zip(lrs, losses) if x is not None], [x for x in losses if x is not None],
                    marker="o", color=study.colours[group], label=group)
            diverged = [lr for lr, x in zip(lrs, losses) if x is None]
            diverged_count += len(diverged)
            mark_diverged(ax, diverged, study.colours[group], limits[1])
        ax.set_xscale("log")
        ax.set_ylim(*limits)
        ax.set_title(f"warmup {percent(warmup)}")
        ax.set_xlabel("peak learning rate")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("final validation loss")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Final loss against learning rate (x at the top: diverged)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"{n} panels ({', '.join(percent(w) for w in study.warmups)}), {len(study.configs)} configurations, {diverged_count} diverged"


def early_series(run_dir, measure, max_step):
    """(steps, values) of a measure over a run's first metrics records: the global update norm, or the mean of a
    per-tensor measure over the weight matrices that have it."""
    metrics = [r for r in run_log.metrics_by_step(run_log.read_records(os.path.join(run_dir, "log.jsonl")))
               if r["step"] < max_step]
    steps, values = [], []
    for r in metrics:
        if measure == "update_norm":
            value = run_log.number(r.get("update_norm"))
        else:
            xs = [run_log.number(t.get(measure)) for name, t in r.get("tensors", {}).items() if run_log.is_matrix(name)]
            xs = [x for x in xs if x is not None]
            value = sum(xs) / len(xs) if xs else None
        if value is not None:
            steps.append(r["step"])
            values.append(value)
    return steps, values


def plot_early_updates(study, path, max_step):
    groups = study.groups
    fig, axes = plt.subplots(len(EARLY_MEASURES), len(groups), figsize=(max(7, 3.8 * len(groups) + 0.5), 8),
                             squeeze=False, sharex=True)
    summary = []
    for col, group in enumerate(groups):
        with_warmup = [w for w in study.warmups if w > 0 and study.best(group, w)[0] is not None]
        reference = min(with_warmup, key=lambda w: study.best(group, w)[1]) if with_warmup else None
        lr = study.best(group, reference)[0] if reference is not None else study.best(group, 0.0)[0]
        if lr is None:
            summary.append(f"{group}: no finished run to show")
            continue
        pairs = [(0.0, "-", "no warmup"), (reference, "--", f"warmup {percent(reference)}" if reference else None)]
        shown = []
        for row, (measure, label) in enumerate(EARLY_MEASURES):
            ax = axes[row][col]
            for warmup, style, name in pairs:
                run_dir = study.run_dir(group, warmup, lr) if name else None
                steps, values = early_series(run_dir, measure, max_step) if run_dir else ([], [])
                if values:
                    ax.plot(steps, values, style, color=study.colours[group], label=name, lw=1.2 if style == "-" else 1.8)
                    if name not in shown:
                        shown.append(name)
            if ax.lines:
                ax.set_yscale("log")
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "not in the logs\n(--metrics-every)", ha="center", va="center", transform=ax.transAxes,
                        fontsize=8, color="grey")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
        axes[0][col].set_title(f"{group}, lr {lr:g}", fontsize=9)
        axes[-1][col].set_xlabel("step")
        summary.append(f"{group}: lr {lr:g}, " + (" vs ".join(shown) if shown else "no metrics records"))
    fig.suptitle("Update size over the first steps: solid without warmup, dashed with the best warmup", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return "; ".join(summary)


def main(argv):
    args = parse_args(argv)
    table = os.path.join(args.sweep, "results.json") if os.path.isdir(args.sweep) else args.sweep
    sweep_dir = os.path.dirname(table) or "."
    try:
        with open(table, encoding="utf-8") as f:
            rows = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: {table}: cannot read the sweep's table: {e}", file=sys.stderr)
        return 1
    study = Study(rows, sweep_dir)
    if not study.finite_losses():
        print(f"error: {table}: no finished run with a final validation loss to plot", file=sys.stderr)
        return 1
    if study.skipped:
        print(f"note: {study.skipped} rows left out (failed, or no warmup recorded)")
    out = args.out or os.path.join(sweep_dir, "plots")
    os.makedirs(out, exist_ok=True)
    for name, plot in [("loss_vs_warmup.png", plot_loss_vs_warmup), ("loss_vs_lr.png", plot_loss_vs_lr),
                       ("early_updates.png", lambda s, p: plot_early_updates(s, p, args.early_steps))]:
        path = os.path.join(out, name)
        print(f"{path}: {plot(study, path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
