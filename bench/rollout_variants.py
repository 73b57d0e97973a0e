"""Variants of ``learnrules fit --method rollout`` on rat W053: can its MLP catch up with REINFORCE+baseline?

On this rat the command's rollout MLP scores below REINFORCE+baseline and the random walk on held-out sessions
and moves with its initialization (bench/results/session_cv_rat.md). Each variant is fitted as the command fits
an MLP rule (:data:`~learnrules.workflow.LBFGS_ROLLOUT_CONFIG`: 50 epochs of Liu et al.'s Adam schedule, then
L-BFGS, early-stopped on 20% of the training sessions drawn with the run's seed, best state kept; 120 s budget;
(32, 32) relu network), from seeds 0, 1, 2, in 3 folds of held-out sessions (held out of the likelihood), and
scored on them along the rollout through all trials:

- ``command``: as it is;
- ``warm-up lr 1e-3``: the Adam warm-up at a third of the step size (its loss jumps at 3e-3 on this rat);
- ``no warm-up``: L-BFGS from the initialization;
- ``init scale 1e-4``: the network's output scale starts 10x smaller (at 1e-3 the random rule drifts the
  weights far over 20,000 trials: first-epoch loss 0.9-1.2 nats/trial, above chance);
- ``refit on all``: the command's fit, then the same network refitted from its initialization on all training
  sessions for the epochs that early stopping chose (no sessions left unused; ``fit_s``: the refit alone).

Run: ``.venv/bin/python bench/rollout_variants.py [--variants ...] [--seeds 0,1,2] [--tag T]``; writes
bench/results/rollout_variants[_<tag>].md/.csv.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from learnrules.behavior.psytrack import load_psytrack_rat
from learnrules.inference.evaluation.crossval import session_folds
from learnrules.inference.rollout.early_stopping import holdout_sessions
from learnrules.inference.rollout.rollout import rollout_loglik
from learnrules.inference.rollout.rollout_fit import RolloutResult, fit_rollout
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import MLPRule
from learnrules.workflow import LBFGS_ROLLOUT_CONFIG

from report import setup, write_report

OUT = Path(__file__).resolve().parent / "results"
FEATURES = ("bias", "s1", "s2")
VARIANTS = ("command", "warm-up lr 1e-3", "no warm-up", "init scale 1e-4", "refit on all")


def fit_variant(variant: str, train: CohortTensors, seed: int, budget: float,
                command: RolloutResult | None = None) -> RolloutResult:
    """Fit ``variant`` (``refit on all`` starts from ``command``, the command's fit of the same seed, if given)."""
    config = replace(LBFGS_ROLLOUT_CONFIG, time_budget_s=budget)
    config = {"warm-up lr 1e-3": replace(config, lr=1e-3),
              "no warm-up": replace(config, warmup_epochs=0)}.get(variant, config)
    network = MLPRule(train.n_features, hidden=(32, 32), seed=seed,
                      init_scale=1e-4 if variant == "init scale 1e-4" else 1e-3)
    if variant == "refit on all" and command is not None:
        fitted = command
    else:
        fitted = fit_rollout(train, network, config=config, holdout=holdout_sessions(train, seed=seed), seed=seed,
                             progress=False)
    if variant != "refit on all":
        return fitted
    best = max(range(len(fitted.val_loglik)), key=fitted.val_loglik.__getitem__)
    refit = replace(config, epochs=(best + 1) * config.eval_every, patience=None, time_budget_s=None)
    return fit_rollout(train, network, config=refit, seed=seed, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the initialization")
    parser.add_argument("--budget", type=float, default=120.0, help="wall-time budget of each fit, s")
    parser.add_argument("--tag", default="", help="results/rollout_variants_<tag>.md (parallel runs)")
    args = parser.parse_args()
    setup()
    start, rows = time.perf_counter(), []
    data = load_psytrack_rat()
    full = CohortTensors.from_trials(data, FEATURES, dtype=torch.float64)
    for fold in session_folds(data, k=3, seed=0):
        train = CohortTensors.from_trials(fold.train, FEATURES, dtype=torch.float64)
        scored = torch.as_tensor(fold.score_mask[data.subjects[0]]).unsqueeze(0)
        commands = {}
        for variant in args.variants.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                res = fit_variant(variant, train, seed, args.budget, commands.get(seed))
                if variant == "command":
                    commands[seed] = res
                ll = rollout_loglik(full, res.rule, {}, res.init_weights)
                rows.append({"variant": variant, "seed": seed, "fold": fold.index, "epochs": res.n_steps,
                             "fit_s": round(res.elapsed_s, 1), "heldout_ll": float(ll[scored].mean())})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)  # folds hold equal numbers of sessions, not of trials: pool the trials
    n_scored = {f.index: int(f.score_mask[data.subjects[0]].sum()) for f in session_folds(data, k=3, seed=0)}
    table["n"] = table["fold"].map(n_scored)
    table["ll_sum"] = table["heldout_ll"] * table["n"]
    by_seed = table.groupby(["variant", "seed"], sort=False)[["ll_sum", "n"]].sum()
    by_seed = (by_seed["ll_sum"] / by_seed["n"]).unstack("seed")
    by_seed.columns = [f"seed {c}" for c in by_seed.columns]
    by_seed["mean"] = by_seed.mean(axis=1)
    table = table.drop(columns=["n", "ll_sum"])
    notes = [f"rat W053, features {FEATURES}, 3 session folds (seed 0), nats per held-out trial (all folds pooled "
             f"per seed); budget {args.budget:.0f} s per fit",
             f"torch {torch.__version__}, 1 thread; whole run {time.perf_counter() - start:.0f} s"]
    print(table.to_string(index=False))
    print(by_seed.round(5).to_string())
    stem = OUT / ("rollout_variants" + (f"_{args.tag}" if args.tag else ""))
    write_report(stem, "rollout_variants", __doc__.split("\n")[0], notes, table, by_seed.reset_index())


if __name__ == "__main__":
    main()
