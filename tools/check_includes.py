#!/usr/bin/env python3
"""The house's floors, checked: every #include "..." of the project's sources must go to a folder its own
folder may use (the table below), else this prints each offending line and exits 1.

Floors, top to bottom; a folder includes its own files and those of the floors it lists, never a floor
above it, never one beside it (layers/ and optim/ do not know each other):

    train_gpt2.cu, tools/, test/, fuzz/   the trainer and what drives or checks it: anything in the product
    config/                               flags and recipes, resolved into each floor's options
    backend/                              one training step: joins layers/, optim/ and dist/
    layers/  optim/  dist/  data/         kernels and their CPU references; optimizers; communicators; files
    model/                                GPT-2's description: shapes, parameter layout, FLOPs
    common/ (common/cuda/)                errors, logs, random numbers; CUDA's checked calls and reductions
    emu/                                  the emulated CUDA device: only the emulated build uses it

Usage: check_includes.py [ROOT]   (default: the repository this script is in)
"""
import os
import re
import sys

PRODUCT = ["config", "backend", "layers", "layers/cuda", "optim", "optim/cuda", "dist", "data", "model", "common",
           "common/cuda"]

# Folder (or file) -> the folders it may include besides its own. The longest matching key decides.
ALLOWED = {
    "train_gpt2.cu": PRODUCT,
    "tools": PRODUCT,
    "test": PRODUCT + ["fuzz"],
    "fuzz": PRODUCT,
    "config": ["dist", "optim", "model", "common"],
    "backend": ["layers", "layers/cuda", "optim", "optim/cuda", "dist", "model", "common", "common/cuda"],
    "layers": ["model", "common"],
    "layers/cuda": ["layers", "model", "common", "common/cuda"],
    "optim": ["model", "common"],
    "optim/cuda": ["optim", "model", "common", "common/cuda"],
    "dist": ["common", "common/cuda"],
    "data": ["model", "common"],
    "model": ["common"],
    "common": [],
    "common/cuda": ["common"],
    # A checkpoint holds the optimizer's state (its named buffers, through the Optimizer interface) and is
    # written by every rank together (through the Communicator interface): those two headers only.
    "data/checkpoint.h": ["model", "common", "optim/optimizer.h"],
    "data/checkpoint.cpp": ["model", "common", "optim/optimizer.h", "dist/communicator.h"],
    # emu/test checks the emulated twins of common/cuda/mma.cuh's tensor-core instructions.
    "emu": ["common", "common/cuda", "dist", "test"],
}

SOURCE_DIRS = ["config", "backend", "layers", "optim", "dist", "data", "model", "common", "tools", "test", "fuzz", "emu"]
SOURCE_EXTS = (".h", ".cpp", ".cu", ".cuh", ".inc")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def longest_key(path, keys):
    parts = path.split("/")
    for n in range(len(parts), 0, -1):
        key = "/".join(parts[:n])
        if key in keys:
            return key
    return None


def rule_for(path):
    """The most specific key of ALLOWED that covers path: the file itself, or the nearest folder above it."""
    return longest_key(path, ALLOWED)


def home(path):
    """The floor a file belongs to: the nearest folder above it that the table names ("layers/cuda", "test")."""
    return longest_key(path, [k for k in ALLOWED if not k.endswith(SOURCE_EXTS)]) or os.path.dirname(path)


def allowed(source, target):
    key = rule_for(source)
    if key is None:
        return False
    return home(target) == home(source) or home(target) in ALLOWED[key] or target in ALLOWED[key]


def sources(root):
    yield "train_gpt2.cu"
    for top in SOURCE_DIRS:
        for folder, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(d for d in dirs if d not in ("corpus", "fixtures"))
            for name in sorted(files):
                if name.endswith(SOURCE_EXTS):
                    yield os.path.relpath(os.path.join(folder, name), root)


def violations(root):
    found = []
    for path in sources(root):
        full = os.path.join(root, path)
        if not os.path.exists(full):
            continue
        with open(full, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = m.group(1)
                if not os.path.exists(os.path.join(root, target)):
                    continue  # a system or generated header, or one relative to the file (emu's prelude)
                if not allowed(path, target):
                    key = rule_for(path)
                    may = ", ".join(ALLOWED[key]) if key else "nothing: its folder is not in the table"
                    found.append("%s:%d: includes %s; %s may include its own folder and: %s"
                                 % (path, number, target, home(path), may or "nothing else"))
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    found = violations(os.path.abspath(root))
    for line in found:
        print(line)
    if found:
        print("check_includes: %d include(s) cross a floor (the table is in tools/check_includes.py)" % len(found))
        return 1
    print("check_includes: every include goes down a floor or stays in its folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
