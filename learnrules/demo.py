"""``learnrules demo``: the whole pipeline on the embedded example cohort, in a few minutes on 2 cores.

The example (:func:`learnrules.data.load_example`) is 8 simulated animals x 3000 trials that learn with
REINFORCE with baseline; its metadata gives the true rule and parameters, and the seeded simulator rebuilds
the true weights. The demo

1. fits the random walk (``zero``), REINFORCE+baseline and its hybrid with an MLP
   (``reinforce-baseline+mlp``: the parametric fit first, then the network, whose output starts at zero, with
   the rule's parameters, by L-BFGS to convergence) to all animals and writes each fit's outputs
   (posterior.nc, weights.csv, figures with the true rule and weights overlaid) to ``DIR/<rule>/``;
2. compares the three rules on held-out animals (2 folds of 4 animals; each fold refits every rule);
3. writes ``DIR/compare.csv``, ``DIR/figures/comparison.png``, ``DIR/summary.json`` and, at the top,
   ``DIR/posterior.nc`` of the best rule.

``--budget`` caps each network fit (it converges well before); the demo reports whether it converged.
Cross-validation fits skip the Laplace intervals.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from learnrules.behavior.load import load_trials
from learnrules.behavior.summary import summarize
from learnrules.behavior.trials import TrialData
from learnrules.commands import emit, progress_flag
from learnrules.data import example_metadata, load_example
from learnrules.inference.evaluation.crossval import animal_folds, compare_table
from learnrules.inference.result import FitResult
from learnrules.inference.variational.fit import FitConfig
from learnrules.other_rules.registry import make_rule
from learnrules.outputs import write_fit, write_json
from learnrules.plots import plot_comparison
from learnrules.synthetic.examples import make_example_cohort
from learnrules.workflow import FittedModel, cross_validate_rules, fit_model

__all__ = ["DEMO_RULES", "cmd_demo"]

logger = logging.getLogger(__name__)

DEMO_RULES = ("zero", "reinforce-baseline", "reinforce-baseline+mlp")
_FOLDS = 2


def _fit_all(data: TrialData, args: argparse.Namespace) -> dict[str, FittedModel]:
    models = {}
    for name in DEMO_RULES:
        emit(f"fitting {name} to {data.n_animals} animals x {data.n_trials // data.n_animals} trials ...")
        models[name] = fit_model(data, name, seed=args.seed, budget_s=args.budget, progress=progress_flag(args))
        emit(f"  {models[name].method} fit, {models[name].result.elapsed_s:.0f} s"
             + (f" ({models[name].note})" if models[name].note else ""))
    return models


def _compare(data: TrialData, args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    emit(f"cross-validating on held-out animals ({_FOLDS} folds, every rule refitted per fold) ...")
    config = FitConfig(param_posterior="none")

    def fit(train: TrialData, name: str, start: FitResult | None) -> FittedModel:
        return fit_model(train, name, seed=args.seed, budget_s=args.budget, config=config, start=start,
                         progress=progress_flag(args))

    cv = cross_validate_rules(data, DEMO_RULES, fit, folds=animal_folds(data, k=_FOLDS, seed=args.seed))
    return cv, compare_table(cv)


def _fits_table(models: dict[str, FittedModel], data: TrialData) -> pd.DataFrame:
    return pd.DataFrame([{"rule": n, "method": m.method, "ELBO/trial": m.result.elbo / data.n_trials,
                          "seconds": m.result.elapsed_s, "converged": m.result.converged}
                         for n, m in models.items()])


def _parameters_vs_truth(model: FittedModel, meta: dict[str, Any]) -> pd.DataFrame:
    table = model.result.parameters
    truth = []
    for row in table.itertuples():
        value = meta["params"].get(row.parameter)
        if value is None and row.parameter == "sigma":
            value = meta["sigma"]
        if isinstance(value, list):
            value = value[list(model.result.feature_names).index(row.feature)]
        truth.append(value)
    return table.assign(true=truth)


def _write_all(models: dict[str, FittedModel], data: TrialData, out: Path, args: argparse.Namespace,
               meta: dict[str, Any]) -> None:
    truth = make_example_cohort(meta["seed"])  # the seeded simulator rebuilds the true weights
    true_rule = (make_rule(meta["registry_name"]), meta["params"])
    for name, model in models.items():
        emit(f"writing {out / name}/ ...")
        write_fit(model, data, out / name, seed=args.seed, n_draws=args.draws, truth=true_rule,
                  true_weights=truth.weights)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo; return 0."""
    start = time.perf_counter()
    out = Path(args.out)
    meta = example_metadata()
    data = load_trials(load_example())
    emit(f"example cohort: {meta['n_animals']} animals x {meta['n_trials']} trials, simulated with "
         f"{meta['rule']} {meta['params']} (coding detected: {data.choice_coding})")
    emit(summarize(data).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    models = _fit_all(data, args)
    _write_all(models, data, out, args, meta)
    cv, table = _compare(data, args)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    cv.to_csv(out / "crossval.csv", index=False)
    table.to_csv(out / "compare.csv", index=False)
    plot_comparison(table, path=out / "figures" / "comparison.png")
    best = str(table.iloc[0]["rule"])
    shutil.copyfile(out / best / "posterior.nc", out / "posterior.nc")
    params = _parameters_vs_truth(models["reinforce-baseline"], meta)
    elapsed = time.perf_counter() - start
    write_json(out / "summary.json", {
        "data": "learnrules.data.load_example()", "truth": meta, "fits": _fits_table(models, data).to_dict("records"),
        "reinforce_baseline_parameters": params.to_dict("records"), "comparison": table.to_dict("records"),
        "comparison_scheme": f"held-out animals, {_FOLDS} folds", "best_rule": best,
        "network_budget_s": args.budget, "elapsed_s": elapsed})
    _report(models, data, params, table, out, best, elapsed, args)
    return 0


def _report(models: dict[str, FittedModel], data: TrialData, params: pd.DataFrame, table: pd.DataFrame, out: Path,
            best: str, elapsed: float, args: argparse.Namespace) -> None:
    fmt = {"float_format": lambda v: f"{v:.4g}", "index": False}
    emit("\nfits (all animals):\n" + _fits_table(models, data).to_string(**fmt))
    emit("\nREINFORCE+baseline parameters vs truth:\n" + params.to_string(**fmt))
    emit(f"\nheld-out animals ({_FOLDS} folds):\n" + table[["rule", "rank", "nats_per_trial", "se", "accuracy",
                                                         "diff_vs_best"]].to_string(**fmt))
    emit(f"\nbest held-out rule: {best}; its posterior is {out / 'posterior.nc'}")
    hybrid = models["reinforce-baseline+mlp"]
    emit(f"the hybrid rule: {hybrid.note}. Its network map (reinforce-baseline+mlp/figures/network_map.png) shows "
         "what REINFORCE+baseline misses; here the truth is REINFORCE+baseline, so it should be near zero.")
    emit(f"outputs in {out}/ (figures in {out}/<rule>/figures/ and {out}/figures/); {elapsed:.0f} s in all")

