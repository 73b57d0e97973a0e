"""Simulation speed: 100 animals x 10,000 trials for every rule (budget: < 10 s each on 2 cores).

Run: ``.venv/bin/python bench/simulate_speed.py``. Prints a table and writes bench/results/simulate_speed.md/.csv.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from learnrules.other_rules import RULES, make_rule
from learnrules.synthetic import simulate_cohort

from report import markdown

N_ANIMALS, N_TRIALS, BUDGET_S = 100, 10_000, 10.0
OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    simulate_cohort(make_rule("reinforce"), n_animals=2, n_trials=50, seed=0)  # warm-up
    rows = []
    for name in RULES:
        rule = make_rule(name)
        start = time.perf_counter()
        cohort = simulate_cohort(rule, n_animals=N_ANIMALS, n_trials=N_TRIALS, sigma=0.01, seed=0)
        wall = time.perf_counter() - start
        acc = cohort.table["reward"].to_numpy().reshape(N_ANIMALS, -1)
        rows.append({"rule": name, "class": rule.name, "markov": rule.markov, "fittable": rule.fittable,
                     "animals": N_ANIMALS, "trials": N_TRIALS, "wall_s": round(wall, 3),
                     "us_per_trial_step": round(1e6 * wall / N_TRIALS, 1), "under_budget": wall < BUDGET_S,
                     "accuracy_first_200": round(float(acc[:, :200].mean()), 3),
                     "accuracy_last_1000": round(float(acc[:, -1000:].mean()), 3)})
        print(f"{name:20s} markov={rule.markov!s:5s} {wall:6.2f} s")
    table = pd.DataFrame(rows).sort_values(["markov", "rule"], ascending=[False, True])
    print(table.to_string(index=False))
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "simulate_speed.csv", index=False)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, " \
              f"torch {torch.__version__}, float64"
    lines = [
        "# Simulation speed", "",
        f"`simulate_cohort` with every rule's defaults, {N_ANIMALS} animals x {N_TRIALS:,} trials, sigma 0.01, "
        f"IBL-like task (bias + stimulus). Budget: < {BUDGET_S:.0f} s per rule. Machine: {machine}; the "
        "machine is shared with other jobs, so times are upper bounds.", "",
        "Markov rules (vectorized over animals, a Python loop over trials):", "",
        markdown(table[table["markov"]]), "",
        "Non-Markov rules (data contexts; `compressed` carries a weight-dependent residual), reported "
        "separately:", "",
        markdown(table[~table["markov"]]), "",
    ]
    (OUT / "simulate_speed.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
