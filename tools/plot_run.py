#!/usr/bin/python3
"""Plots one run's train and validation loss against the step, from its log.jsonl.

    /usr/bin/python3 tools/plot_run.py RUN_DIR_OR_LOG [-o OUT_DIR]

Writes OUT_DIR/loss.png (default OUT_DIR: RUN_DIR/plots): the train loss of every step (skipped steps
and non-finite losses are gaps), its mean over a window of steps, and the validation loss. A resumed run's
steps count once. Prints one line with the last values and the figure's path.
"""
import argparse
import os
import sys

import run_log  # noqa: E402

run_log.require_modules("matplotlib", "numpy")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
matplotlib.rcParams["axes.formatter.useoffset"] = False
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run's folder or its log.jsonl")
    p.add_argument("-o", "--out", help="folder for loss.png (default: RUN_DIR/plots)")
    return p.parse_args(argv)


def losses(records, kind):
    """(steps, losses) of the records of a type, NaN where a loss is missing or a step was skipped."""
    rows = run_log.by_step(records, kind)
    steps = np.array([r["step"] for r in rows], dtype=float)
    values = np.array([np.nan if r.get("skipped") or (v := run_log.number(r.get("loss"))) is None else v for r in rows], dtype=float)
    return steps, values


def moving_mean(values, window):
    """The mean over the last `window` finite values at each point (NaN before the first)."""
    out = np.full(values.shape, np.nan)
    for i in range(len(values)):
        part = values[max(0, i - window + 1):i + 1]
        if np.isfinite(part).any():
            out[i] = np.nanmean(part)
    return out


def main(argv):
    args = parse_args(argv)
    log_path = os.path.join(args.run, "log.jsonl") if os.path.isdir(args.run) else args.run
    run_dir = os.path.dirname(log_path) or "."
    try:
        records = run_log.read_records(log_path)
    except (OSError, ValueError) as e:
        print(f"error: {log_path}: {e}", file=sys.stderr)
        return 1
    train_steps, train = losses(records, "train")
    val_steps, val = losses(records, "val")
    if not np.isfinite(train).any() and not np.isfinite(val).any():
        print(f"error: {log_path}: no train or val losses to plot", file=sys.stderr)
        return 1
    out = args.out or os.path.join(run_dir, "plots")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "loss.png")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    window = max(1, len(train) // 20)
    if len(train):
        ax.plot(train_steps, train, color="tab:blue", alpha=0.3 if window > 1 else 1.0, linewidth=0.8, label="train")
        if window > 1:
            ax.plot(train_steps, moving_mean(train, window), color="tab:blue", label=f"train, mean of {window} steps")
    if len(val):
        ax.plot(val_steps, val, "o-", color="tab:orange", markersize=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(os.path.basename(os.path.abspath(run_dir)))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

    def last(steps, values):
        finite = np.flatnonzero(np.isfinite(values))
        return f"{values[finite[-1]]:.4f} at step {int(steps[finite[-1]])}" if finite.size else "none"
    print(f"loss: train {last(train_steps, train)}, val {last(val_steps, val)} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
