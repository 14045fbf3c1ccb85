"""A sweep's grid file: reading and checking it, and expanding it into the list of runs.

Format (docs/STUDY_TOOLS.md has the full description):
    {
      "comment": "anything",                       # optional, here and in every group
      "trainer": "./train_gpt2",                   # the binary (default ./train_gpt2)
      "output": "out/sweeps/NAME",                 # the sweep's folder: runs/<run>/, results.csv, results.json
      "flags": {"train-data": "${DATA}/...", "max-steps": 200, ...},   # trainer flags for every run
      "axes": {"-u": [0, "5%"], "seed": [0, 1]},                        # shared axes: every group x these
      "groups": [{"name": "adamw", "flags": {"recipe": "paper-adamw"}, "axes": {"lr": [1e-3, 3e-3]}}, ...],
      "collect": {"early_steps": 100, "diverged_above": 9.0},          # optional
      "keep_checkpoints": false                                        # optional
    }
A flag's key is written as on the command line ("-u", "--lr") or as its long name ("lr", the key of a
--config file). Each group runs the cartesian product of its own axes, then the shared axes it does not
redefine; the last axis varies fastest. "${NAME}" in a string is replaced by the environment variable NAME;
DATA defaults to ../shared/data.
"""
import hashlib
import json
import os
import re

DEFAULT_ENV = {"DATA": "../shared/data"}
# The sweep gives each run its folder and resumes it; a grid must not set these.
SWEEP_OWNED_FLAGS = {"o", "output-dir", "y", "resume"}
TOP_LEVEL_FIELDS = {"comment", "trainer", "output", "flags", "axes", "groups", "collect", "keep_checkpoints"}
GROUP_FIELDS = {"comment", "name", "flags", "axes"}
COLLECT_FIELDS = {"early_steps", "diverged_above"}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class GridError(ValueError):
    pass


class Run:
    """One configuration: its folder name, its group, the values of its axes and its complete flags."""

    def __init__(self, group, settings, flags):
        self.group = group
        self.settings = settings  # {axis key: value}, in axis order
        self.flags = flags        # {flag key: value}, before ${...} substitution (the run's identity)
        self.name = run_name(group, settings, flags)

    def command(self, trainer, run_dir, env):
        args = [trainer]
        for key, value in self.flags.items():
            args += [flag_argument(key), substitute(command_value(value), env, f"flag {key}")]
        return args + ["-o", run_dir, "-y", "1"]


def environment():
    """What ${NAME} can name: the environment, with DATA defaulting to ../shared/data."""
    return dict(DEFAULT_ENV, **os.environ)


def load(path, env):
    """(grid dict, [Run]) of a grid file; GridError names the file and the field that is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            grid = json.load(f)
    except OSError as e:
        raise GridError(f"{path}: cannot read the grid: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise GridError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    check = Checker(path)
    check.object(grid, "the grid", TOP_LEVEL_FIELDS)
    for field in ("output", "groups"):
        if field not in grid:
            raise check.error(field, "is missing")
    check.string(grid["output"], "output")
    check.string(grid.get("trainer", ""), "trainer")
    shared_flags = check.flags(grid.get("flags", {}), "flags")
    shared_axes = check.axes(grid.get("axes", {}), "axes")
    collect = grid.get("collect", {})
    check.object(collect, "collect", COLLECT_FIELDS)
    if "early_steps" in collect and not (isinstance(collect["early_steps"], int) and collect["early_steps"] > 0):
        raise check.error("collect.early_steps", f"expected a positive integer, got {json.dumps(collect['early_steps'])}")
    if "diverged_above" in collect and not is_number(collect["diverged_above"]):
        raise check.error("collect.diverged_above", f"expected a number, got {json.dumps(collect['diverged_above'])}")
    if not isinstance(grid.get("keep_checkpoints", False), bool):
        raise check.error("keep_checkpoints", "expected true or false")
    if not isinstance(grid["groups"], list) or not grid["groups"]:
        raise check.error("groups", "expected a non-empty list of {name, flags, axes}")

    runs = []
    for i, group in enumerate(grid["groups"]):
        where = f"groups[{i}]"
        check.object(group, where, GROUP_FIELDS)
        if not isinstance(group.get("name"), str) or not re.fullmatch(r"[A-Za-z0-9._+-]+", group["name"]):
            raise check.error(f"{where}.name", "expected a name of letters, digits and . _ + - (it starts each run's folder name)")
        flags = dict(shared_flags, **check.flags(group.get("flags", {}), f"{where}.flags"))
        axes = check.axes(group.get("axes", {}), f"{where}.axes")
        axes.update({k: v for k, v in shared_axes.items() if k not in axes})
        for key in axes:
            if key in group.get("flags", {}):
                raise check.error(f"{where}.flags.{key}", "is also an axis of this group (to fix a shared axis for one "
                                                          "group, give the group that axis with one value)")
        runs += expand(group["name"], flags, axes)

    seen = {}
    for run in runs:
        if run.name in seen:
            raise GridError(f"{path}: groups {seen[run.name]!r} and {run.group!r} both contain the run {run.name} (the same flags)")
        seen[run.name] = run.group
    grid["trainer"] = substitute(grid.get("trainer") or "./train_gpt2", env, f"{path}: trainer")
    grid["output"] = substitute(grid["output"], env, f"{path}: output")
    for run in runs:  # every ${...} must resolve before anything starts
        for key, value in run.flags.items():
            substitute(command_value(value), env, f"{path}: flag {key} of group {run.group}")
    return grid, runs


def expand(group, flags, axes):
    combos = [{}]
    for key, values in axes.items():
        combos = [dict(c, **{key: v}) for c in combos for v in values]
    return [Run(group, combo, dict(flags, **combo)) for combo in combos]


def run_name(group, settings, flags):
    """Readable and stable: the group, each axis value, and a hash of every flag, e.g. adamw_lr3e-3_u5pct_seed0_1f2e3d4c."""
    parts = [group] + [short_key(k) + short_value(v) for k, v in settings.items()]
    digest = hashlib.sha1(json.dumps({"group": group, "flags": flags}, sort_keys=True).encode()).hexdigest()[:8]
    return "_".join(parts + [digest])


def short_key(key):
    return re.sub(r"[^A-Za-z0-9]", "", key.lstrip("-"))


def short_value(value):
    if isinstance(value, float) and value != 0 and not (1e-2 <= abs(value) < 1e4):
        mantissa, exponent = f"{value:.4e}".split("e")
        text = mantissa.rstrip("0").rstrip(".") + "e" + str(int(exponent))
    else:
        text = command_value(value)
    text = text.replace("%", "pct")
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)[:24]


def flag_argument(key):
    return key if key.startswith("-") else "--" + key


def command_value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def substitute(text, env, where):
    def replace(m):
        if m.group(1) not in env:
            raise GridError(f"{where}: ${{{m.group(1)}}} is not set (export {m.group(1)}=...)")
        return env[m.group(1)]
    return _VARIABLE.sub(replace, text)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Checker:
    """Type checks that raise GridError naming the grid file and the field."""

    def __init__(self, path):
        self.path = path

    def error(self, field, problem):
        return GridError(f"{self.path}: {field} {problem}")

    def object(self, value, field, allowed):
        if not isinstance(value, dict):
            raise self.error(field, "expected a JSON object")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.error(field, f"has unknown field {unknown[0]!r} (expected one of {', '.join(sorted(allowed))})")

    def string(self, value, field):
        if not isinstance(value, str):
            raise self.error(field, f"expected a string, got {json.dumps(value)}")

    def scalar(self, value, field):
        if not (isinstance(value, (str, bool)) or is_number(value)):
            raise self.error(field, f"expected a string, number or boolean, got {json.dumps(value)}")

    def flags(self, flags, field):
        if not isinstance(flags, dict):
            raise self.error(field, "expected a JSON object of {flag: value}")
        for key, value in flags.items():
            self.key(key, f"{field}.{key}")
            self.scalar(value, f"{field}.{key}")
        return dict(flags)

    def axes(self, axes, field):
        if not isinstance(axes, dict):
            raise self.error(field, "expected a JSON object of {flag: [values]}")
        for key, values in axes.items():
            self.key(key, f"{field}.{key}")
            if not isinstance(values, list) or not values:
                raise self.error(f"{field}.{key}", f"expected a non-empty list of values, got {json.dumps(values)}")
            for j, value in enumerate(values):
                self.scalar(value, f"{field}.{key}[{j}]")
        return dict(axes)

    def key(self, key, field):
        if key.lstrip("-") in SWEEP_OWNED_FLAGS:
            raise self.error(field, "is set by the sweep itself (each run gets its own folder and is resumed with -y 1)")
        if not re.fullmatch(r"-{0,2}[A-Za-z][A-Za-z0-9-]*", key):
            raise self.error(field, "is not a flag name (expected e.g. \"lr\", \"--lr\" or \"-l\")")
