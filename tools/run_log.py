"""Reading a run's log.jsonl (the trainer's JSON-lines log), shared by the sweep and the plot tools.

The tensor names and their order follow the trainer's metrics records (README, "What a run writes"):
wte, wpe, then per layer h{l}.<kind>, then lnfw, lnfb.
"""
import json
import math
import os
import re
import sys

# Per-layer tensor kinds in llm.c's parameter order.
LAYER_KINDS = ["ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb"]
MODEL_TENSORS_FIRST = ["wte", "wpe"]
MODEL_TENSORS_LAST = ["lnfw", "lnfb"]
# The weight matrices: what the early-training statistics summarise (gains and biases behave differently
# and would dilute a mean over layers).
MATRIX_KINDS = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"}

_LAYER_TENSOR = re.compile(r"^h(\d+)\.(\w+)$")


def read_records(path):
    """The records of a log, in order. A last line cut short (a trainer killed mid-write) is ignored;
    a malformed line elsewhere is an error naming the file and line."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number >= len(lines) - 1:  # the last line (a complete file ends with "\n", so maybe the one before "")
                break
            raise ValueError(f"{path}:{number}: not a JSON record: {e}") from None
    return records


def require_modules(*names):
    """Exits with one line naming the interpreter when it lacks a module the tool needs (Debian's
    /usr/bin/python3 has them once python3-matplotlib and python3-numpy are installed)."""
    missing = []
    for name in names:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        packages = " ".join("python3-" + m for m in missing)
        sys.exit(f"{os.path.basename(sys.argv[0])}: {sys.executable} has no {', '.join(missing)}; run the tool with an "
                 f"interpreter that has them, e.g. /usr/bin/python3 {sys.argv[0]} (Debian: sudo apt-get install {packages})")


def of_type(records, kind):
    return [r for r in records if r.get("type") == kind]


def by_step(records, kind):
    """The records of a type, one per step (a later record for the same step, as a resumed run writes,
    replaces an earlier one), by step."""
    latest = {}
    for r in of_type(records, kind):
        latest[r["step"]] = r
    return [latest[s] for s in sorted(latest)]


def metrics_by_step(records):
    return by_step(records, "metrics")


def number(value):
    """value as a float, or None where it is missing, null or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def split_name(tensor):
    """(kind, layer) of a tensor name: ("qkvw", 3) for h3.qkvw, ("wte", None) for wte."""
    m = _LAYER_TENSOR.match(tensor)
    return (m.group(2), int(m.group(1))) if m else (tensor, None)


def is_matrix(tensor):
    return split_name(tensor)[0] in MATRIX_KINDS


def kind_order(kinds):
    """Tensor kinds in the model's order: wte, wpe, the per-layer kinds, lnfw, lnfb, then any others by name."""
    known = MODEL_TENSORS_FIRST + LAYER_KINDS + MODEL_TENSORS_LAST
    return sorted(kinds, key=lambda k: (known.index(k), "") if k in known else (len(known), k))
