"""Parametric recovery: simulate cohorts under known parametric rules, fit the same rule, check the posterior.

For each rule: ``n_animals`` x ``n_trials`` simulated agents (features bias, stimulus; sigma known to the
simulator), fit by :func:`learnrules.inference.variational.fit` (sigma learned, Laplace posterior of rule parameters and
sigma), and report every true value against its 90% interval and the relative error of the learning rates.
With several seeds it also reports, per parameter, the coverage of the 90% intervals across seeds and the
relative error of the seed-averaged posterior mean (a systematic bias shows there; one seed's miss may be
sampling noise); per fit, whether the issue's literal criterion holds (every truth inside, every rate within
25%); and per learning rate, the chance that an estimate as uncertain as its posterior falls within 25% of
the truth (``p_within_25``: a calibrated Gaussian posterior of that width, centred anywhere the data allow).

Usage:
``python bench/parametric_recovery.py [--animals 20] [--trials 5000] [--seeds 0-3] [--name NAME]`` fits and
writes bench/results/NAME.md and .csv (default name parametric_recovery);
``python bench/parametric_recovery.py --merge A.csv B.csv ... [--name NAME]`` rebuilds the report from the
rows of earlier runs (seed ranges run side by side, one process per core).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.dynamics import DynamicsConfig
from learnrules.models.inputs import CohortTensors
from learnrules.other_rules import AsymmetricReinforce, DeltaRule, ReinforceBaseline

from report import markdown, setup

RESULTS = Path(__file__).with_name("results")
SIGMA = (0.02, 0.02)
CASES = {
    "ReinforceBaseline": (ReinforceBaseline(), {"alpha": [0.05, 0.1], "beta": 0.3}),
    "AsymmetricReinforce": (AsymmetricReinforce(), AsymmetricReinforce.from_rates([0.06, 0.1], [0.02, 0.04])),
    "DeltaRule": (DeltaRule(), {"alpha": [0.01, 0.02], "beta": 4.0}),
}
RATES = {"alpha", "alpha_plus", "alpha_minus"}


def simulate(rule, params, *, n_animals, n_trials, sigma, seed):
    """Simulate a 2AFC cohort learning with ``rule``; return CohortTensors (10 sessions per animal)."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.tensor([-1.0, -0.5, -0.25, -0.125, 0.0, 0.125, 0.25, 0.5, 1.0])
    x = torch.stack([torch.ones(n_animals, n_trials),
                     levels[torch.randint(0, len(levels), (n_animals, n_trials), generator=g)]], -1)
    w = torch.stack([0.5 * torch.randn(n_animals, generator=g), 0.3 + 0.2 * torch.rand(n_animals, generator=g)], -1)
    ys, rs = [], []
    for t in range(n_trials):
        y = (torch.rand(n_animals, generator=g) < torch.sigmoid((w * x[:, t]).sum(-1))).double()
        side = torch.where(x[:, t, 1] == 0, (torch.rand(n_animals, generator=g) < 0.5).double(),
                           (x[:, t, 1] > 0).double())
        r = (y == side).double()
        w = w + rule.drift(params, w, x[:, t], y, r, None) + torch.tensor(sigma) * torch.randn(w.shape, generator=g)
        ys.append(y)
        rs.append(r)
    start = torch.zeros(n_animals, n_trials, dtype=torch.bool)
    start[:, ::max(n_trials // 10, 1)] = True
    ones = torch.ones(n_animals, n_trials, dtype=torch.bool)
    return CohortTensors(x, torch.stack(ys, 1), torch.stack(rs, 1), ones, ones, start,
                         torch.full((n_animals,), n_trials), ("bias", "stimulus"),
                         tuple(f"sim{i}" for i in range(n_animals)))


def recover(name, n_animals, n_trials, seed=0):
    """Fit one case; return rows (one per true value) of the comparison table."""
    rule, truth = CASES[name]
    params = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in truth.items()}
    truth = {k: v.tolist() for k, v in (params | rule.derived(params)).items()}
    data = simulate(rule, params, n_animals=n_animals, n_trials=n_trials, sigma=SIGMA, seed=seed)
    start = time.perf_counter()
    res = fit(data, rule=rule, config=FitConfig(dynamics=DynamicsConfig(sigma=0.05)), seed=seed)
    elapsed = time.perf_counter() - start
    table = res.parameters
    truth_rows = [("sigma", f, s) for f, s in zip(data.feature_names, SIGMA, strict=True)]
    for key, value in truth.items():
        values = np.atleast_1d(value)
        feats = data.feature_names if len(values) > 1 else [""]
        truth_rows += [(key, f, float(v)) for f, v in zip(feats, values, strict=True)]
    rows = []
    for parameter, feature, true in truth_rows:
        row = table[(table["parameter"] == parameter) & (table["feature"] == feature)].iloc[0]
        rows.append({"rule": name, "seed": seed, "animals": n_animals, "trials": n_trials, "parameter": parameter,
                     "feature": feature, "true": true, "mean": row["mean"], "lower": row["lower"],
                     "upper": row["upper"], "inside_90": bool(row["lower"] <= true <= row["upper"]),
                     "clamped": bool(row["clamped"]),
                     "rel_error": abs(row["mean"] - true) / abs(true), "fit_s": elapsed, "steps": res.n_steps,
                     "converged": res.converged})
    return rows


def across_seeds(table):
    """Per parameter: 90%-interval coverage over seeds and the relative error of the seed-mean estimate."""
    keys = ["rule", "parameter", "feature"]
    summary = table.groupby(keys, sort=False).agg(seeds=("seed", "size"), true=("true", "first"),
                                                   mean=("mean", "mean"), sd_over_seeds=("mean", "std"),
                                                   coverage_90=("inside_90", "mean"), clamped=("clamped", "sum"),
                                                   median_rel_error=("rel_error", "median")).reset_index()
    summary["rel_error_of_seed_mean"] = (summary["mean"] - summary["true"]).abs() / summary["true"].abs()
    return summary


def per_fit(table):
    """Per rule and seed: are all truths inside their 90% intervals, and every learning rate within 25%?"""
    rates = table["parameter"].isin(RATES)
    keys = ["rule", "seed"]
    fits = table.groupby(keys, sort=False).agg(inside=("inside_90", "sum"), truths=("inside_90", "size"))
    fits["max_rate_error"] = table[rates].groupby(keys, sort=False)["rel_error"].max()
    fits["criterion_met"] = (fits["inside"] == fits["truths"]) & (fits["max_rate_error"] < 0.25)
    return fits.reset_index()


def within_25(table):
    """Per learning rate: mean over seeds of the chance that a calibrated estimate falls within 25%.

    The posterior sd is read off the 90% interval, (upper - lower) / (2 z_0.95); an estimator whose error is
    N(0, sd^2) lands within 25% of the truth with probability 2 Phi(0.25 |true| / sd) - 1.
    """
    rates = table[table["parameter"].isin(RATES)].copy()
    sd = (rates["upper"] - rates["lower"]) / (2 * norm.ppf(0.95))
    rates["p_within_25"] = 2 * norm.cdf(0.25 * rates["true"].abs() / sd) - 1
    rates["within_25"] = rates["rel_error"] < 0.25
    keys = ["rule", "parameter", "feature"]
    return rates.groupby(keys, sort=False).agg(seeds=("seed", "size"), p_within_25=("p_within_25", "mean"),
                                               share_within_25=("within_25", "mean")).reset_index()


def report(table, n_animals, n_trials):
    """The markdown report of a table of fits (one row per true value)."""
    seeds = sorted(table["seed"].unique())
    rates = table[table["parameter"].isin(RATES)]
    fits = per_fit(table)
    inside, n = int(table["inside_90"].sum()), len(table)
    coverage_se = np.sqrt(0.9 * 0.1 / n)
    return (f"# Parametric recovery ({n_animals} animals x {n_trials} trials per rule, {len(seeds)} seed(s): "
            f"{seeds[0]}-{seeds[-1]}, 90% Laplace intervals)\n\n"
            "Targets: every true value inside its 90% interval; learning-rate relative error < 25%.\n\n"
            f"Inside: {inside}/{n} ({inside / n:.1%}; calibrated 90% intervals give 90% +- {coverage_se:.1%}); "
            f"max learning-rate relative error {rates['rel_error'].max():.3f}. Fits meeting the criterion "
            f"(all inside, every rate within 25%): {int(fits['criterion_met'].sum())}/{len(fits)}.\n\n"
            f"Likelihood-ratio intervals (rows `clamped`: the Laplace curvature was raised to its floor there): "
            f"{int(table['clamped'].sum())}, of which miss the truth: "
            f"{int((table['clamped'] & ~table['inside_90']).sum())}."
            "\n\n## Across seeds\n\n" + markdown(across_seeds(table))
            + "\n\n## Learning rates: chance to fall within 25% at the posterior's width\n\n"
            + markdown(within_25(table))
            + "\n\n## The criterion per fit\n\n" + markdown(fits)
            + "\n\n## Every fit\n\n" + markdown(table) + "\n")


def seed_range(text):
    """``"4-11"`` -> [4, ..., 11]; ``"3"`` -> [3]."""
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--animals", type=int, default=20)
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--seeds", type=seed_range, default=seed_range("0"))
    parser.add_argument("--merge", nargs="+", type=Path, help="CSV files of earlier runs: report them, fit nothing")
    parser.add_argument("--name", default="parametric_recovery")
    args = parser.parse_args()
    setup(log_level=None)
    if args.merge:
        table = pd.concat([pd.read_csv(f, keep_default_na=False) for f in args.merge], ignore_index=True)
        table = table.sort_values(["seed"], kind="stable").drop_duplicates(["rule", "seed", "parameter", "feature"])
    else:
        rows = []
        for seed in args.seeds:
            for name in CASES:
                rows += recover(name, args.animals, args.trials, seed=seed)
                print(markdown(pd.DataFrame(rows[-5:])), flush=True)
        table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / f"{args.name}.csv", index=False)
    text = report(table, int(table["animals"].iloc[0]), int(table["trials"].iloc[0]))
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
