#!/usr/bin/python3
"""Plots a run's update-size metrics (the "metrics" records of its log.jsonl, written with --metrics-every).

    /usr/bin/python3 tools/plot_metrics.py RUN_DIR_OR_LOG [-o OUT_DIR] [--max-step N] [--measures angle,rrc,...]

For each per-tensor measure in the log (angle, angle_rows, rel_update, update_norm, rrc, grad_norm,
grad_mom_cos, mom_grad_ratio, snr_scale, w_norm) it writes OUT_DIR/<measure>.png, one panel per tensor kind
with one line per layer, and OUT_DIR/<measure>_heatmap.png, tensor x step. OUT_DIR/global.png has the
whole-model series (update_norm, the gradient norm before clipping (from the train records) and after,
b_noise, lr; a B_noise estimate that is not positive is a gap, and the count of them is printed). A log scale is used where the values span more
than 1.5 decades; null values (undefined, e.g. the relative update of an all-zero bias) are gaps.
OUT_DIR defaults to RUN_DIR/plots. Prints one line per figure.
"""
import argparse
import os
import sys

import run_log  # noqa: E402

run_log.require_modules("matplotlib", "numpy")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
# Tick labels as the values themselves: an offset ("+1.0002e1" beside the axis) makes noise look like swings.
matplotlib.rcParams["axes.formatter.useoffset"] = False
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TENSOR_MEASURES = {
    "angle": "angle between W_t and W_t+1 (rad)",
    "angle_rows": "angle per row, RMS over rows (rad)",
    "rel_update": "relative update ||ΔW|| / ||W||",
    "update_norm": "update l2 norm ||ΔW||",
    "rrc": "relative representation change ||ΔW X|| / ||W X||",
    "grad_norm": "gradient l2 norm ||g||",
    "grad_mom_cos": "cos(g_t, m_t-1)",
    "mom_grad_ratio": "||m_t|| / ||g_t||",
    "snr_scale": "LionAR step scale k_t",
    "w_norm": "weight l2 norm ||W||",
}
GLOBAL_SERIES = {"update_norm": "update l2 norm (all tensors)",
                 "grad_norm_unclipped": "gradient l2 norm before clipping (train records)",
                 "grad_norm": "gradient l2 norm after clipping (all tensors)",
                 "b_noise": "gradient noise scale B_noise (tokens)", "lr": "learning rate"}
LOG_SCALE_SPAN = 10 ** 1.5


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run's folder or its log.jsonl")
    p.add_argument("-o", "--out", help="folder for the PNGs (default: RUN_DIR/plots)")
    p.add_argument("--max-step", type=int, help="only the metrics of steps below this")
    p.add_argument("--measures", help="comma-separated measures to plot (default: all in the log): " + ", ".join(TENSOR_MEASURES))
    return p.parse_args(argv)


def series(metrics, get):
    """(steps, values) with NaN where get returns no number."""
    steps = np.array([r["step"] for r in metrics], dtype=float)
    values = np.array([np.nan if (v := run_log.number(get(r))) is None else v for r in metrics], dtype=float)
    return steps, values


def wants_log_scale(values):
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.min() <= 0:
        return False
    return finite.max() / finite.min() > LOG_SCALE_SPAN


def tensors_by_kind(metrics, measure):
    """{kind: [tensor names in layer order]} of the tensors that have a number for measure somewhere."""
    names = {n for r in metrics for n, t in r.get("tensors", {}).items() if run_log.number(t.get(measure)) is not None}
    kinds = {}
    for name in names:
        kinds.setdefault(run_log.split_name(name)[0], []).append(name)
    return {k: sorted(kinds[k], key=lambda n: run_log.split_name(n)[1] or 0) for k in run_log.kind_order(kinds)}


def plot_curves(metrics, measure, kinds, log_scale, title, path):
    layers = max((run_log.split_name(n)[1] or 0 for names in kinds.values() for n in names), default=0) + 1
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, layers))
    cols = min(4, len(kinds))
    rows = (len(kinds) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharex=True)
    legend_done = False
    for ax, (kind, names) in zip(axes.flat, kinds.items()):
        for name in names:
            layer = run_log.split_name(name)[1]
            steps, values = series(metrics, lambda r: r.get("tensors", {}).get(name, {}).get(measure))
            ax.plot(steps, values, color=colours[layer or 0] if layer is not None else "black", lw=1.2,
                    label=f"layer {layer}" if layer is not None else name)
        ax.set_title(kind)
        ax.set_yscale("log" if log_scale else "linear")
        ax.grid(alpha=0.3)
        if not legend_done and len(names) > 1:
            ax.legend(fontsize=7, ncol=2)
            legend_done = True
    for ax in axes.flat[len(kinds):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel(measure)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_heatmap(metrics, measure, kinds, log_scale, title, path):
    names = [n for group in kinds.values() for n in group]
    steps = [r["step"] for r in metrics]
    grid = np.array([series(metrics, lambda r, n=n: r.get("tensors", {}).get(n, {}).get(measure))[1] for n in names])
    finite = grid[np.isfinite(grid)]
    cmap = plt.get_cmap("magma").copy()
    norm = None
    if log_scale:
        norm = mcolors.LogNorm(finite.min(), finite.max())
    elif finite.min() < 0 < finite.max():  # a cosine: the sign matters, white is zero
        cmap = plt.get_cmap("coolwarm").copy()
        norm = mcolors.TwoSlopeNorm(0, finite.min(), finite.max())
    cmap.set_bad((0, 0, 0, 0))  # undefined values: transparent over the hatched background
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.12 * len(names)))
    ax.patch.set_hatch("///")
    ax.patch.set_edgecolor("lightgrey")
    spacing = (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 else 1  # --metrics-every
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                      extent=(steps[0] - spacing / 2, steps[-1] + spacing / 2, len(names) - 0.5, -0.5))
    centres, start = [], 0
    for kind, group in kinds.items():
        centres.append(start + (len(group) - 1) / 2)
        start += len(group)
        if start < len(names):
            ax.axhline(start - 0.5, color="white", lw=0.8)
    ax.set_yticks(centres, [f"{k} (layers 0-{len(g) - 1})" if len(g) > 1 else k for k, g in kinds.items()], fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("tensor")
    fig.colorbar(image, ax=ax, label=measure + (" (log)" if log_scale else ""))
    ax.set_title(title + " (hatched: undefined)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def global_series(metrics, train, key):
    """(steps, values) of a whole-model series: the gradient norm before clipping from the train records
    (the metrics records hold it after clipping), a B_noise estimate that is not positive as a gap."""
    if key == "grad_norm_unclipped":
        return series(train, lambda r: r.get("grad_norm"))
    steps, values = series(metrics, lambda r: r.get(key))
    if key == "b_noise":
        values[values <= 0] = np.nan
    return steps, values


def not_positive_b_noise(metrics):
    """How many B_noise estimates there are, and how many of them are not positive (one estimate is noisy)."""
    estimates = [v for v in (run_log.number(r.get("b_noise")) for r in metrics) if v is not None]
    return len(estimates), sum(v <= 0 for v in estimates)


def plot_global(metrics, train, path):
    present = [k for k in GLOBAL_SERIES if np.isfinite(global_series(metrics, train, k)[1]).any()]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for ax, key in zip(axes[0], present):
        steps, values = global_series(metrics, train, key)
        ax.plot(steps, values, color="tab:blue")
        ax.set_yscale("log" if wants_log_scale(values) else "linear")
        title = GLOBAL_SERIES[key]
        if key == "b_noise" and not_positive_b_noise(metrics)[1]:
            title += "\n%d of %d estimates not positive (gaps)" % tuple(reversed(not_positive_b_noise(metrics)))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return present


def main(argv):
    args = parse_args(argv)
    log_path = os.path.join(args.run, "log.jsonl") if os.path.isdir(args.run) else args.run
    run_dir = os.path.dirname(log_path) or "."
    out = args.out or os.path.join(run_dir, "plots")
    try:
        records = run_log.read_records(log_path)
        metrics = run_log.metrics_by_step(records)
    except (OSError, ValueError) as e:
        print(f"error: {log_path}: {e}", file=sys.stderr)
        return 1
    train = run_log.by_step(records, "train")
    if args.max_step is not None:
        metrics = [r for r in metrics if r["step"] < args.max_step]
        train = [r for r in train if r["step"] < args.max_step]
    if not metrics:
        print(f"error: {log_path}: no metrics records (train with --metrics-every N to log them)", file=sys.stderr)
        return 1
    measures = args.measures.split(",") if args.measures else list(TENSOR_MEASURES)
    unknown = [m for m in measures if m not in TENSOR_MEASURES]
    if unknown:
        print(f"error: --measures: unknown measure {unknown[0]!r} (expected some of {', '.join(TENSOR_MEASURES)})", file=sys.stderr)
        return 1
    os.makedirs(out, exist_ok=True)
    for measure in measures:
        description = TENSOR_MEASURES[measure]
        kinds = tensors_by_kind(metrics, measure)
        if not kinds:
            if args.measures:
                print(f"{measure}: not in the log")
            continue
        values = np.concatenate([series(metrics, lambda r, n=n: r["tensors"].get(n, {}).get(measure))[1]
                                 for names in kinds.values() for n in names])
        log_scale = wants_log_scale(values)
        title = f"{description}: {os.path.basename(os.path.abspath(run_dir))}"
        curves, heatmap = os.path.join(out, f"{measure}.png"), os.path.join(out, f"{measure}_heatmap.png")
        plot_curves(metrics, measure, kinds, log_scale, title, curves)
        plot_heatmap(metrics, measure, kinds, log_scale, title, heatmap)
        print(f"{measure}: {len(kinds)} kinds, {sum(map(len, kinds.values()))} tensors, {len(metrics)} steps, "
              f"{'log' if log_scale else 'linear'} scale -> {curves}, {heatmap}")
    present = plot_global(metrics, train, os.path.join(out, "global.png"))
    if present:
        estimates, not_positive = not_positive_b_noise(metrics)
        noise = f" (B_noise: {not_positive} of {estimates} estimates not positive, left out)" if not_positive else ""
        print(f"global: {', '.join(present)} -> {os.path.join(out, 'global.png')}{noise}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
