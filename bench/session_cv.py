"""Held-out-session cross-validation: holding the test sessions out of the likelihood vs masking their choices.

Both protocols fit on all trials but the held-out sessions' and score those sessions one step ahead along a
trajectory through all trials, where each choice moves the weights:

- ``mask`` (learnrules until stop 24, :func:`mask_trials`): while fitting, the held-out choices are missing,
  so the rule does not update on them; the fitted trajectory and the scored one part at the first held-out
  session;
- ``hold out`` (now, :func:`hold_out_trials`): the held-out trials keep their choices, which move the weights
  in the fit as in the score, and only lose their likelihood terms.

Rules as ``learnrules compare`` fits them (:func:`learnrules.workflow.fit_model`): the random walk and
REINFORCE+baseline by the variational fit, a (32, 32) relu MLP by the deterministic rollout (``--method
rollout``) under a time budget, from three initializations (seeds). Data:

- ``simulated``: 8 animals x 2,000 trials of noise-free REINFORCE+baseline (sessions of 250 trials, initial
  weights spread 0.5), 3 session folds; the oracle is the true rule from the true initial weights;
- ``rat``: rat W053 of the psytrack wheel (20,000 trials, 80 sessions; features bias, s1, s2), 3 folds.

Run: ``.venv/bin/python bench/session_cv.py [--budget 120] [--data simulated,rat] [--seeds 0,1,2] [--rules ...]
[--protocols ...] [--name session_cv]``; writes bench/results/<name>[_<data>].md/.csv (the suffix when ``--data``
is one of them). ``--rules "mlp best-of-3" --protocols "hold out" --name session_cv_restarts``: the MLP fitted
from seeds 0, 1, 2 keeping the best on its early-stopping sessions (``learnrules fit --restarts 3``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from learnrules.behavior import load_trials
from learnrules.behavior.psytrack import load_psytrack_rat
from learnrules.behavior.trials import TrialData
from learnrules.inference.evaluation.crossval import Fold, RulePredictor, cross_validate, mask_trials, session_folds
from learnrules.inference.variational.fit import FitConfig
from learnrules.other_rules import make_rule
from learnrules.synthetic import IBLTask, simulate_cohort
from learnrules.workflow import FitPredictor, fit_model

from report import setup, write_report

OUT = Path(__file__).resolve().parent / "results"
# name: (registry name, method, restarts); a rollout rule without restarts is fitted once per seed
RULES = {"zero": ("zero", "variational", 1), "reinforce-baseline": ("reinforce-baseline", "variational", 1),
         "mlp": ("mlp", "rollout", 1), "mlp best-of-3": ("mlp", "rollout", 3)}


def masked(folds: list[Fold]) -> list[Fold]:
    """The same folds under the old protocol: the held-out sessions' choices missing while fitting."""
    return [Fold(f.index, mask_trials(f.test, f.score_mask), f.test, f.score_mask) for f in folds]


def run(name: str, data: TrialData, features: tuple[str, ...], args: argparse.Namespace,
        oracle: RulePredictor | None = None) -> pd.DataFrame:
    folds = session_folds(data, k=3, seed=0)
    fit_fns = {}
    for key in args.rules.split(","):
        rule, method, restarts = RULES[key]
        for seed in args.seeds if method == "rollout" and restarts == 1 else args.seeds[:1]:
            fit_fns[f"{key}|{seed}"] = (lambda train, rule=rule, method=method, seed=seed, restarts=restarts:
                                        FitPredictor(fit_model(train, rule, features=features, seed=seed,
                                                               budget_s=args.budget, method=method, progress=False,
                                                               config=FitConfig(param_posterior="none"),
                                                               restarts=restarts)))  # as `learnrules compare`
    tables = []
    for protocol, protocol_folds in (("hold out", folds), ("mask", masked(folds))):
        if protocol not in args.protocols.split(","):
            continue
        start = time.perf_counter()
        cv = cross_validate(data, fit_fns, folds=protocol_folds)
        tables.append(cv.assign(protocol=protocol))
        print(f"{name}, {protocol}: {time.perf_counter() - start:.0f} s", flush=True)
    if oracle is not None:
        tables.append(cross_validate(data, {"oracle|-": lambda train: oracle}, folds=folds).assign(protocol="-"))
    cv = pd.concat(tables, ignore_index=True)
    cv[["rule", "seed"]] = cv["rule"].str.split("|", expand=True)  # the "rule|seed" keys
    pooled = cv.groupby(["protocol", "rule", "seed", "fold"], sort=False)[["loglik", "n_trials"]].sum()
    per_fold = (pooled["loglik"] / pooled["n_trials"]).unstack("fold")
    per_fold["all folds"] = (pooled["loglik"].groupby(level=[0, 1, 2], sort=False).sum()
                             / pooled["n_trials"].groupby(level=[0, 1, 2], sort=False).sum())
    per_fold.columns = [f"fold {c}" if isinstance(c, (int, np.integer)) else c for c in per_fold.columns]
    return per_fold.reset_index().assign(data=name)


def simulated(args: argparse.Namespace) -> pd.DataFrame:
    rule = make_rule("reinforce-baseline")
    sim = simulate_cohort(rule, n_animals=8, n_trials=2000, sigma=0.0, init_sd=0.5,
                          task=IBLTask(session_length=250), seed=5)
    data = load_trials(sim.table)
    oracle = RulePredictor(rule, sim.params, init_by_subject=dict(zip(data.subjects, sim.weights[:, 0], strict=True)))
    return run("simulated", data, ("bias", "stimulus"), args, oracle)


def rat(args: argparse.Namespace) -> pd.DataFrame:
    return run("rat W053", load_psytrack_rat(), ("bias", "s1", "s2"), args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="wall-time budget of each MLP fit, s")
    parser.add_argument("--data", default="simulated,rat", help="comma-separated: simulated, rat")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the MLP's initialization")
    parser.add_argument("--rules", default="zero,reinforce-baseline,mlp", help=f"comma-separated: {', '.join(RULES)}")
    parser.add_argument("--protocols", default="hold out,mask", help="comma-separated: hold out, mask")
    parser.add_argument("--name", default="session_cv", help="results/<name>[_<data>].md and .csv")
    args = parser.parse_args()
    setup()
    start, args.seeds = time.perf_counter(), [int(s) for s in args.seeds.split(",")]
    tables = [f(args) for key, f in (("simulated", simulated), ("rat", rat)) if key in args.data]
    table = pd.concat(tables, ignore_index=True)
    table = table[["data", "protocol", "rule", "seed", *[c for c in table.columns if c.startswith("fold")],
                   "all folds"]]
    mean = table.groupby(["data", "protocol", "rule"], sort=False)["all folds"].mean().reset_index()
    notes = [f"3 session folds (seed 0); nats per held-out trial; MLP rollout budget {args.budget:.0f} s per fit, "
             f"seeds {args.seeds} (a rule with restarts: from the first)",
             f"torch {torch.__version__}, 1 thread; whole run {time.perf_counter() - start:.0f} s"]
    print(table.to_string(index=False))
    print(mean.to_string(index=False))
    stem = OUT / (args.name + (f"_{args.data}" if args.data in ("simulated", "rat") else ""))
    write_report(stem, "session_cv", __doc__.split("\n")[0], notes, table, "Mean over seeds:", mean)


if __name__ == "__main__":
    main()
