"""What a sweep keeps of each run: a summary of its log (final validation loss, divergence, early-training
update statistics) beside the process's outcome, and the table of all runs as CSV and JSON."""
import csv
import io
import json
import os

import run_log

# Per-tensor measures summarised over the weight matrices and the first K steps.
EARLY_TENSOR_MEASURES = ["angle", "angle_rows", "rel_update", "rrc"]
COLUMNS = (["name", "group", "optimizer", "recipe", "lr", "warmup", "warmup_frac", "seed", "status", "diverged",
            "final_val_loss", "min_val_loss", "final_train_loss", "steps", "steps_done", "nonfinite_steps",
            "exit_code", "wall_s", "early_steps_measured", "early_update_norm_max", "early_update_norm_mean"]
           + [f"early_{m}_{s}" for m in EARLY_TENSOR_MEASURES for s in ("max", "mean")] + ["error", "dir"])


def summarize_log(log_path, early_steps, diverged_above):
    """The columns that come from a run's log.jsonl."""
    records = run_log.read_records(log_path)
    run = (run_log.of_type(records, "run") or [{}])[0]
    config = run.get("config", {})
    steps = run.get("steps")
    train = run_log.of_type(records, "train")
    val = run_log.of_type(records, "val")
    val_losses = [run_log.number(r.get("loss")) for r in val]
    train_losses = [run_log.number(r.get("loss")) for r in train]
    final_val = val_losses[-1] if val and val[-1]["step"] == steps else None
    final_train = train_losses[-1] if train_losses else None
    # Divergence: no finite final loss (validation loss where the run validates), or one above the
    # threshold, by default the run's own loss at the start.
    if val:
        final, start = final_val, (val_losses[0] if val[0]["step"] == 0 else None)
    else:
        final, start = final_train, (train_losses[0] if train_losses else None)
    threshold = diverged_above if diverged_above is not None else start
    warmup = config.get("warmup", config.get("warmup-steps"))
    row = {
        "optimizer": config.get("optimizer"),
        "recipe": config.get("recipe"),
        "lr": config.get("lr"),
        "warmup": warmup,
        "warmup_frac": warmup_fraction(warmup, steps),
        "seed": config.get("seed"),
        "final_val_loss": final_val,
        "min_val_loss": min((x for x in val_losses if x is not None), default=None),
        "final_train_loss": final_train,
        "steps": steps,
        "steps_done": len(train),
        "nonfinite_steps": sum(x is None for x in train_losses),
        "diverged": final is None or (threshold is not None and final > threshold),
    }
    row.update(early_statistics(run_log.metrics_by_step(records), early_steps))
    return row


def warmup_fraction(warmup, steps):
    """Warmup as a fraction of the run: the trainer's option is a step count or a percentage ("5%")."""
    if isinstance(warmup, str) and warmup.endswith("%"):
        return float(warmup[:-1]) / 100
    try:
        return float(warmup) / steps if steps else None
    except (TypeError, ValueError):
        return None


def early_statistics(metrics, early_steps):
    """Max and mean of the global update norm, and of each per-tensor measure pooled over the weight matrices,
    over the metrics records of steps < early_steps."""
    early = [r for r in metrics if r["step"] < early_steps]
    row = {"early_steps_measured": len(early)}
    global_norms = [x for x in (run_log.number(r.get("update_norm")) for r in early) if x is not None]
    row["early_update_norm_max"] = max(global_norms, default=None)
    row["early_update_norm_mean"] = sum(global_norms) / len(global_norms) if global_norms else None
    for measure in EARLY_TENSOR_MEASURES:
        values = [run_log.number(t.get(measure)) for r in early for name, t in r.get("tensors", {}).items()
                  if run_log.is_matrix(name)]
        values = [x for x in values if x is not None]
        row[f"early_{measure}_max"] = max(values, default=None)
        row[f"early_{measure}_mean"] = sum(values) / len(values) if values else None
    return row


def table_row(run, result, run_dir, sweep_dir, collect):
    """One row: the run's settings, the outcome of its process (result.json) and the summary of its log."""
    row = {"name": run.name, "group": run.group, "status": result["status"], "exit_code": result["exit_code"],
           "wall_s": result["wall_s"], "error": result.get("error"), "dir": os.path.relpath(run_dir, sweep_dir)}
    log_path = os.path.join(run_dir, "log.jsonl")
    if os.path.exists(log_path):
        row.update(summarize_log(log_path, collect.get("early_steps", 100), collect.get("diverged_above")))
    row["diverged"] = result["status"] == "diverged" or (result["status"] == "ok" and row.get("diverged", False))
    if row["diverged"]:
        row["status"] = "diverged"
    for key, value in run.settings.items():  # every axis, as the grid spells it (lr, seed: the trainer's value above)
        row.setdefault(key.lstrip("-"), value)
    return row


def write_tables(rows, sweep_dir):
    """results.json (a list of rows) and results.csv, each replaced atomically."""
    columns = COLUMNS + sorted({k for r in rows for k in r if k not in COLUMNS})
    write_atomically(os.path.join(sweep_dir, "results.json"), json.dumps(rows, indent=1) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: csv_value(r.get(k)) for k in columns})
    write_atomically(os.path.join(sweep_dir, "results.csv"), text.getvalue())


def csv_value(value):
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def write_atomically(path, text):
    """Written to a temporary name, flushed to disk and renamed: a reader never sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
