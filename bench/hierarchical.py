"""Hierarchical (partially pooled) rule parameters: recovery of per-animal learning rates, pooling's gain, cost.

Each seed simulates an IBL-like cohort (``simulate_cohort``) learning with REINFORCE+baseline whose per-animal
learning rates are log-normal around the population medians (``--population-sd`` on the log scale; the
baseline is shared), then fits it three ways:

- ``hierarchical`` (``fit_pooled(pooling="hierarchical")``): per-animal rates with a fitted population;
- ``independent``: per-animal rates, each with the rule's declared prior alone;
- ``shared`` (``fit``): one rate for all animals (timed only, for the cost ratio).

Reported per seed: the correlation of the per-animal estimates with the truth (log scale and raw), their RMSE
(log scale), the 90% coverage of the per-animal intervals, whether the population median and sd lie in their
90% intervals, and each fit's wall time.

Usage: ``python bench/hierarchical.py [--animals 20] [--trials 3000] [--seeds 0-3] [--fits hierarchical,shared]
[--name NAME]`` writes bench/results/NAME.md and .csv (one row per seed and fit).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.inference.variational.pooling import fit_pooled
from learnrules.models.dynamics import DynamicsConfig
from learnrules.models.inputs import CohortTensors
from learnrules.other_rules import ReinforceBaseline
from learnrules.synthetic.cohort import simulate_cohort

from report import markdown, setup

RESULTS = Path(__file__).with_name("results")
MEDIAN = {"alpha": [0.05, 0.1], "beta": 0.3}
SIGMA = 0.02


def seed_range(text):
    """``"4-11"`` -> [4, ..., 11]; ``"3"`` -> [3]."""
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def scores(res, truth, features):
    """Per-animal recovery of each learning rate and the population's coverage, as one dict per feature."""
    table = res.animal_table[res.animal_table["parameter"] == "alpha"]
    out = {}
    for k, feature in enumerate(features):
        rows = table[table["feature"] == feature]
        est, lo, hi = (rows[c].to_numpy() for c in ("mean", "lower", "upper"))
        true = truth[:, k]
        out[f"corr_log_{feature}"] = float(np.corrcoef(np.log(est), np.log(true))[0, 1])
        out[f"corr_{feature}"] = float(np.corrcoef(est, true)[0, 1])
        out[f"rmse_log_{feature}"] = float(np.sqrt(np.mean((np.log(est) - np.log(true)) ** 2)))
        out[f"coverage_{feature}"] = float(np.mean((lo <= true) & (true <= hi)))
        pop = res.population_table
        if len(pop):
            sel = pop[(pop["parameter"] == "alpha") & (pop["feature"] == feature)]
            diff = sel[sel["quantity"] == "difference"]
            if len(diff):  # two groups: the log ratio of their medians
                out[f"log_ratio_{feature}"] = diff["mean"].iloc[0]
                out[f"log_ratio_lower_{feature}"] = diff["lower"].iloc[0]
                out[f"log_ratio_upper_{feature}"] = diff["upper"].iloc[0]
                out[f"excludes_0_{feature}"] = bool(diff["lower"].iloc[0] > 0 or diff["upper"].iloc[0] < 0)
                continue
            med = sel[sel["quantity"] == "median"].iloc[0]
            sd = sel[sel["quantity"] == "sd"].iloc[0]
            out[f"median_{feature}"] = med["mean"]
            out[f"median_inside_{feature}"] = bool(med["lower"] <= MEDIAN["alpha"][k] <= med["upper"])
            out[f"sd_{feature}"] = sd["mean"]
            out[f"sd_lower_{feature}"], out[f"sd_upper_{feature}"] = sd["lower"], sd["upper"]
    return out


def simulate(rule, seed, n_animals, n_trials, population_sd, group_ratio):
    """Return the cohort's tensors, each animal's true rates ``(animals, K)`` and group labels (or None).

    With ``group_ratio`` the second half of the animals ("lesion") has its median stimulus rate multiplied by it.
    """
    halves = [n_animals] if group_ratio is None else [n_animals // 2, n_animals - n_animals // 2]
    parts, truth = [], []
    for i, size in enumerate(halves):
        median = dict(MEDIAN, alpha=[MEDIAN["alpha"][0], MEDIAN["alpha"][1] * (group_ratio if i else 1.0)])
        cohort = simulate_cohort(rule, n_animals=size, n_trials=n_trials, params=median, sigma=SIGMA,
                                 population_sd={"alpha": population_sd}, seed=seed + 1000 * i, dtype=torch.float64)
        parts.append(cohort.tensors().to(torch.float64))
        rates = cohort.animal_params["alpha"] if cohort.animal_params is not None else \
            np.broadcast_to(np.asarray(median["alpha"]), (size, 2))
        truth.append(rates)
    if len(parts) == 1:
        return parts[0], truth[0], None
    a, b = parts
    subjects = tuple(f"c{s}" for s in a.subjects) + tuple(f"l{s}" for s in b.subjects)
    data = CohortTensors(*(torch.cat([getattr(a, f), getattr(b, f)]) for f in
                           ("features", "choice", "reward", "observed", "valid", "session_start", "lengths")),
                         a.feature_names, subjects)
    groups = {s: "control" if s.startswith("c") else "lesion" for s in subjects}
    return data, np.concatenate(truth), groups


def run_seed(seed, n_animals, n_trials, population_sd, fits, group_ratio=None):
    """Simulate one cohort and fit it every way in ``fits``; return one row per fit."""
    rule = ReinforceBaseline()
    data, truth, groups = simulate(rule, seed, n_animals, n_trials, population_sd, group_ratio)
    config = FitConfig(dynamics=DynamicsConfig(sigma=0.05))
    rows = []
    for how in fits:
        start = time.perf_counter()
        if how == "shared":
            res = fit(data, rule=rule, config=config, seed=seed)
        else:
            res = fit_pooled(data, rule=rule, pooling=how, config=config, seed=seed,
                             groups=groups if how == "hierarchical" else None)
        elapsed = time.perf_counter() - start
        row = {"seed": seed, "animals": n_animals, "trials": n_trials, "population_sd": population_sd, "fit": how,
               "fit_s": elapsed, "steps": res.n_steps, "converged": res.converged, "elbo": res.elbo}
        if how != "shared":
            row.update(scores(res, truth, data.feature_names))
        rows.append(row)
        print(markdown(pd.DataFrame([row])), flush=True)
    return rows


def summary(table):
    """Means over seeds per fit, and the must-show counts."""
    numeric = table.drop(columns=["seed"]).groupby("fit", sort=False).mean(numeric_only=True)
    numeric["seeds"] = table.groupby("fit", sort=False).size()
    return numeric.reset_index()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--animals", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--population-sd", type=float, default=0.5)
    parser.add_argument("--seeds", type=seed_range, default=seed_range("0"))
    parser.add_argument("--fits", default="hierarchical,shared")
    parser.add_argument("--group-ratio", type=float, default=None,
                        help="two groups of animals whose median stimulus rates differ by this factor")
    parser.add_argument("--name", default="hierarchical")
    args = parser.parse_args()
    setup(log_level=None)
    rows = []
    for seed in args.seeds:
        rows += run_seed(seed, args.animals, args.trials, args.population_sd, args.fits.split(","),
                         args.group_ratio)
    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / f"{args.name}.csv", index=False)
    text = (f"# Hierarchical rule parameters ({args.animals} animals x {args.trials} trials, REINFORCE+baseline, "
            f"log-rate population sd {args.population_sd}, seeds {args.seeds[0]}-{args.seeds[-1]})\n\n"
            f"Command: `OMP_NUM_THREADS=1 python bench/hierarchical.py --animals {args.animals} --trials "
            f"{args.trials} --population-sd {args.population_sd} --seeds {args.seeds[0]}-{args.seeds[-1]} "
            f"--fits {args.fits}{'' if args.group_ratio is None else f' --group-ratio {args.group_ratio}'} "
            f"--name {args.name}`\n\n## Means over seeds\n\n" + markdown(summary(table))
            + "\n\n## Every fit\n\n" + markdown(table) + "\n")
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
