#!/usr/bin/python3
"""Runs every configuration of a grid file (tools/sweep_grid.py; docs/STUDY_TOOLS.md) one after another,
or one per GPU, and tables the outcome: OUTPUT/results.csv and OUTPUT/results.json.

    /usr/bin/python3 tools/sweep.py tools/grids/smoke.json [--dry-run] [--gpus N] [--shard K/N] [--only REGEX]

Relaunching the same command continues: finished runs (OUTPUT/runs/<run>/result.json) are skipped and an
interrupted run resumes from its newest checkpoint (the trainer's -y 1). A run that failed for a reason other
than divergence is retried. Each run's folder holds the trainer's files, trainer_output.txt and result.json.
"""
import argparse
import collections
import ctypes
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import sweep_collect
import sweep_grid


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grid", help="the grid file (JSON)")
    p.add_argument("--dry-run", action="store_true", help="list the runs (and whether each has finished); run nothing")
    p.add_argument("--table-only", action="store_true",
                   help="only rebuild results.csv and results.json from the runs' results (e.g. after copying in the "
                        "run folders of shards run elsewhere)")
    p.add_argument("--gpus", default="auto",
                   help="runs at a time, one per GPU, each with its CUDA_VISIBLE_DEVICES; 0: one at a time without "
                        "setting it; auto (default): the GPUs that nvidia-smi -L lists")
    p.add_argument("--shard", help="K/N: only the K-th (0-based) of N equal consecutive blocks of the runs")
    p.add_argument("--only", help="only the runs whose name matches this regular expression")
    p.add_argument("--trainer", help="the trainer binary (overrides the grid's trainer)")
    p.add_argument("--output", help="the sweep's folder (overrides the grid's output)")
    return p.parse_args(argv)


def select(runs, shard, only):
    if shard:
        m = re.fullmatch(r"(\d+)/(\d+)", shard)
        if not m or not int(m.group(1)) < int(m.group(2)):
            raise sweep_grid.GridError(f"--shard {shard}: expected K/N with 0 <= K < N, e.g. 0/4")
        k, n = int(m.group(1)), int(m.group(2))
        runs = runs[k * len(runs) // n:(k + 1) * len(runs) // n]
    if only:
        try:
            pattern = re.compile(only)
        except re.error as e:
            raise sweep_grid.GridError(f"--only {only}: not a regular expression ({e})") from None
        runs = [r for r in runs if pattern.search(r.name)]
    return runs


def gpu_slots(requested):
    """The CUDA_VISIBLE_DEVICES value of each slot; [None]: one run at a time, the environment untouched."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d for d in visible.split(",") if d.strip()]
    else:
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
            devices = [str(i) for i, _ in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]
        except (OSError, subprocess.TimeoutExpired):
            devices = []
    if requested == "auto":
        return devices or [None]
    if not requested.isdigit():
        raise sweep_grid.GridError(f"--gpus {requested}: expected a number or auto")
    n = int(requested)
    if n == 0:
        return [None]
    return (devices + [str(i) for i in range(len(devices), n)])[:n]


def read_result(run_dir):
    try:
        with open(os.path.join(run_dir, "result.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def finished(run_dir):
    result = read_result(run_dir)
    return result is not None and result["status"] in ("ok", "diverged")


def remove_checkpoints(run_dir):
    for name in os.listdir(run_dir):
        if re.fullmatch(r"(model_\d{8}\.bin|state_\d{8}_\d{5}\.bin|DONE_\d{8})(\.tmp)?", name):
            os.remove(os.path.join(run_dir, name))


def die_with_parent():
    """Runs in the child before exec: the trainer gets SIGKILL when the sweep dies, so that no orphan keeps
    writing into a run folder that a relaunched sweep resumes (Linux; elsewhere the lock still guards)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Job:
    """A trainer process running one run, holding the run folder's lock."""

    def __init__(self, run, run_dir, command, device, lock_fd):
        self.run, self.run_dir, self.command, self.device, self.lock_fd = run, run_dir, command, device, lock_fd
        self.output_path = os.path.join(run_dir, "trainer_output.txt")
        env = dict(os.environ)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        with open(self.output_path, "a", encoding="utf-8") as out:
            out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
            out.flush()
            self.output_start = out.tell()
            # The lock's file descriptor goes to the trainer too: the lock lasts as long as either lives.
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, pass_fds=(lock_fd,), preexec_fn=die_with_parent)
        self.start = time.time()

    def error_line(self):
        with open(self.output_path, encoding="utf-8", errors="replace") as f:
            f.seek(self.output_start)
            errors = [l.strip() for l in f if l.startswith("error:")]
        return errors[-1] if errors else None

    def result(self):
        code = self.process.returncode
        error = self.error_line()
        if code == 0:
            status = "ok"
        elif error and "non-finite" in error:
            status = "diverged"
        else:
            status = "failed"
            error = error or f"the trainer {'was killed by signal %d' % -code if code < 0 else 'exited with status %d' % code}"
        return {"name": self.run.name, "group": self.run.group, "settings": self.run.settings, "flags": self.run.flags,
                "command": self.command, "device": self.device, "status": status, "exit_code": code, "error": error, "wall_s": round(time.time() - self.start, 3),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def try_lock(run_dir):
    """An open descriptor holding run_dir/.lock, or None while another sweep (or its trainer) holds it."""
    os.makedirs(run_dir, exist_ok=True)
    fd = os.open(os.path.join(run_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


class Sweep:
    """Runs the selected runs of a grid; tables all of the grid's runs that have a result."""

    def __init__(self, grid, all_runs, runs, sweep_dir, trainer, slots, env):
        self.grid, self.all_runs, self.runs, self.sweep_dir = grid, all_runs, runs, sweep_dir
        self.trainer, self.slots, self.env = trainer, slots, env
        self.collect = grid.get("collect", {})
        self.done = 0
        self.failed = []
        self.durations = []
        self.waiting_said = False

    def run_dir(self, run):
        return os.path.join(self.sweep_dir, "runs", run.name)

    def progress(self, text):
        print(f"[{self.done}/{len(self.runs)}] {text}", flush=True)

    def eta(self):
        if not self.durations:
            return "eta ?"
        left = (len(self.runs) - self.done) * (sum(self.durations) / len(self.durations)) / len(self.slots)
        return "eta " + duration_text(left)

    def execute(self):
        pending = collections.deque()
        for run in self.runs:
            if finished(self.run_dir(run)):
                self.done += 1
                self.progress(f"{run.name}: finished before, skipped")
            else:
                pending.append(run)
        running = {}  # slot index -> Job
        try:
            while pending or running:
                started = self.start_jobs(pending, running)
                ended = self.reap(running)
                if not started and not ended:
                    time.sleep(0.05)
        except KeyboardInterrupt:
            self.stop(running)
            self.write_table()
            print("interrupted: relaunch the same command to continue (finished runs are kept, the others resume)",
                  file=sys.stderr)
            return 130
        self.write_table()
        for name, error in self.failed:
            print(f"failed: {name}: {error}", file=sys.stderr)
        return 1 if self.failed else 0

    def start_jobs(self, pending, running):
        started = False
        for slot, device in enumerate(self.slots):
            if slot in running:
                continue
            for _ in range(len(pending)):
                run = pending.popleft()
                fd = try_lock(self.run_dir(run))
                if fd is None:  # another sweep has it; look again later
                    pending.append(run)
                    continue
                if finished(self.run_dir(run)):  # that other sweep finished it meanwhile
                    os.close(fd)
                    self.done += 1
                    self.progress(f"{run.name}: finished by another sweep, skipped")
                    continue
                command = run.command(self.trainer, self.run_dir(run), self.env)
                running[slot] = Job(run, self.run_dir(run), command, device, fd)
                self.progress(f"{run.name}: started" + (f" on GPU {device}" if device is not None else ""))
                started = True
                self.waiting_said = False
                break
        if pending and not running and not started and not self.waiting_said:
            print(f"waiting: {len(pending)} runs are locked by another sweep or its trainer", flush=True)
            self.waiting_said = True
        return started

    def reap(self, running):
        ended = False
        for slot, job in list(running.items()):
            if job.process.poll() is None:
                continue
            # Ctrl-C reached the trainer first (it checkpoints and exits 128 + SIGINT); the sweep's follows.
            if job.process.returncode in (-signal.SIGINT, 128 + signal.SIGINT):
                raise KeyboardInterrupt
            del running[slot]
            ended = True
            result = job.result()
            sweep_collect.write_atomically(os.path.join(job.run_dir, "result.json"), json.dumps(result, indent=1) + "\n")
            if result["status"] != "failed" and not self.grid.get("keep_checkpoints", False):
                remove_checkpoints(job.run_dir)
            os.close(job.lock_fd)
            self.done += 1
            if result["status"] == "failed":
                self.failed.append((job.run.name, result["error"]))
            else:
                self.durations.append(result["wall_s"])
            row = self.row(job.run)
            loss = row.get("final_val_loss")
            self.progress(f"{job.run.name}: {row['status']}, final val loss {loss if loss is None else f'{loss:.4f}'}, "
                          f"{duration_text(result['wall_s'])} | {self.eta()}")
        return ended

    def stop(self, running):
        for job in running.values():
            if job.process.poll() is None:
                job.process.send_signal(signal.SIGTERM)
        for job in running.values():
            job.process.wait()
            os.close(job.lock_fd)

    def row(self, run):
        result = read_result(self.run_dir(run))
        return sweep_collect.table_row(run, result, self.run_dir(run), self.sweep_dir, self.collect) if result else None

    def write_table(self):
        """Every run of the grid that has a result, whichever launch or shard ran it."""
        rows = [r for r in (self.row(run) for run in self.all_runs) if r is not None]
        sweep_collect.write_tables(rows, self.sweep_dir)
        print(f"table: {os.path.join(self.sweep_dir, 'results.csv')} and results.json ({len(rows)} of "
              f"{len(self.all_runs)} runs)", flush=True)


def stop_like_ctrl_c(signum, frame):
    """SIGTERM (a job scheduler's stop) ends the sweep as Ctrl-C does: trainers stopped, the table written."""
    raise KeyboardInterrupt


def duration_text(seconds):
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}h{s // 60 % 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"


def main(argv):
    args = parse_args(argv)
    env = sweep_grid.environment()
    try:
        grid, all_runs = sweep_grid.load(args.grid, env)
        runs = select(all_runs, args.shard, args.only)
        slots = gpu_slots(args.gpus)
    except sweep_grid.GridError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sweep_dir = args.output or grid["output"]
    trainer = args.trainer or grid["trainer"]
    if args.dry_run:
        for run in runs:
            run_dir = os.path.join(sweep_dir, "runs", run.name)
            state = "finished" if finished(run_dir) else "to run"
            print(f"{run.name}  [{state}]  {' '.join(run.command(trainer, run_dir, env))}")
        print(f"{len(runs)} runs (of {len(all_runs)} in {args.grid})")
        return 0
    sweep = Sweep(grid, all_runs, runs, sweep_dir, trainer, slots, env)
    if args.table_only:
        if not os.path.isdir(sweep_dir):
            print(f"error: --table-only: no sweep folder {sweep_dir}", file=sys.stderr)
            return 1
        sweep.write_table()
        return 0
    if shutil.which(trainer) is None:
        print(f"error: the trainer {trainer} is not an executable file (grid field 'trainer' or --trainer; build it with make)",
              file=sys.stderr)
        return 1
    os.makedirs(sweep_dir, exist_ok=True)
    signal.signal(signal.SIGTERM, stop_like_ctrl_c)
    print(f"sweep: {len(runs)} runs, {len(slots)} at a time{' on GPUs ' + ','.join(slots) if slots[0] is not None else ''}; "
          f"folder {sweep_dir}", flush=True)
    return sweep.execute()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
