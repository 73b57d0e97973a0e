"""``learnrules compare`` of 4 rules x 5 folds with ``--jobs 1`` and ``--jobs 2``, timed in the same run.

The command a user runs, as a subprocess: a simulated REINFORCE+baseline cohort (10 animals x 1,000 trials,
``learnrules simulate``), the parametric rules zero, reinforce, reinforce-baseline and delta, 5 folds of
held-out animals: 20 independent fits, each run to its tolerance. Reported per run: wall time, the CPU time
of the command and its worker processes, the CPU time every other process on the machine used meanwhile
(from /proc/stat: on a shared machine the speed-up is bounded by the cores left to us), the load average
before and after, and whether compare.csv and crossval.csv are byte-identical between the runs.

Run once: ``.venv/bin/python bench/parallel_compare.py``; writes bench/results/parallel_compare.md/.csv.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from report import write_report

OUT = Path(__file__).resolve().parent / "results"
RULES = "zero,reinforce,reinforce-baseline,delta"
CLI = [sys.executable, "-m", "learnrules.cli"]


def _busy_ticks() -> tuple[int, int]:
    """Return the machine's busy and total CPU ticks since boot (all cores, /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(table: Path, out: Path, jobs: int, folds: int) -> dict:
    tick = os.sysconf("SC_CLK_TCK")
    load_before = os.getloadavg()
    busy0, _ = _busy_ticks()
    cpu0 = _children_cpu()
    began = time.perf_counter()
    subprocess.run([*CLI, "compare", str(table), "--rules", RULES, "--folds", str(folds), "--jobs", str(jobs),
                    "--out", str(out), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    cpu = _children_cpu() - cpu0
    busy = (_busy_ticks()[0] - busy0) / tick
    return {"jobs": jobs, "wall_s": wall, "cpu_s": cpu, "others_cpu_s": max(busy - cpu, 0.0),
            "others_cores": max(busy - cpu, 0.0) / wall, "load_before": load_before[0],
            "load_after": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--animals", type=int, default=10)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = tmp / "cohort.csv"
        subprocess.run([*CLI, "simulate", "--rule", "reinforce-baseline", "--animals", str(args.animals),
                        "--trials", str(args.trials), "--seed", "0", "--out", str(table), "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
        runs = [_run(table, tmp / f"jobs{jobs}", jobs, args.folds) for jobs in (1, 2)]
        same = {name: (tmp / "jobs1" / name).read_bytes() == (tmp / "jobs2" / name).read_bytes()
                for name in ("compare.csv", "crossval.csv")}
        compare = pd.read_csv(tmp / "jobs1" / "compare.csv")
    table = pd.DataFrame(runs)
    speedup = table["wall_s"].iloc[0] / table["wall_s"].iloc[1]
    n_fits = len(RULES.split(",")) * args.folds
    summary = (f"`learnrules compare` of {len(RULES.split(','))} rules x {args.folds} folds ({n_fits} fits) on "
               f"{args.animals} animals x {args.trials} trials: --jobs 2 took {table['wall_s'].iloc[1]:.1f} s "
               f"against {table['wall_s'].iloc[0]:.1f} s for --jobs 1, a speed-up of {speedup:.2f}x; "
               f"compare.csv identical: {same['compare.csv']}, crossval.csv identical: {same['crossval.csv']}.")
    notes = [f"{platform.node() or 'this machine'}: {os.cpu_count()} cores shared with other users; torch "
             f"{torch.__version__}, one torch thread per process; Python {platform.python_version()}",
             "wall_s includes starting the command (imports), and with --jobs 2 starting 2 worker processes that "
             "each import torch and learnrules (~5 s each on this machine under load)",
             "cpu_s: user + system CPU of the command and its worker processes; others_cpu_s: CPU every other "
             "process on the machine used during the run (/proc/stat busy time minus cpu_s), others_cores that "
             "per second of wall time: the cores they took from the 2",
             "load_before / load_after: 1-minute load average when the run started and ended",
             "one run of each, in the same script, not repeated: the speed-up is as noisy as the machine's load"]
    write_report(OUT / "parallel_compare", "parallel_compare", summary, notes, table,
                 "## The comparison (both runs)", compare[["rule", "rank", "nats_per_trial", "se", "accuracy"]])
    print(summary)


if __name__ == "__main__":
    main()
