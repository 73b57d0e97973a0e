"""Real animals, held-out sessions: the random walk, REINFORCE+baseline, neural and hybrid rules.

Each animal's sessions are split into 5 folds (``session_folds``); every rule is refitted per fold with the
fold's sessions held out of the likelihood (their choices still move the weights) and scores them one step
ahead (Gaussian filter); the neural and hybrid rules start from the fold's REINFORCE+baseline fit, as in
``learnrules compare`` (their seconds are the network stage's). Reported per rule: the mean held-out
log-likelihood per trial over folds with its
SE across folds, and the paired difference to REINFORCE+baseline with its SE across folds. Rules are fitted as
``learnrules compare --scheme sessions`` fits them (``learnrules.workflow.fit_model``, no intervals).

Data (``--data``):
- ``rat``: rat W053 of the psytrack wheel (20,000 trials, 80 sessions; features bias, s1, s2);
- ``mouse``: the IBL mouse SWC_054 shipped in learnrules.data (7,844 trials, 11 sessions; features bias,
  stimulus, prev_choice, prev_reward; no-go trials dropped).

Usage: python bench/real_sessions.py --data rat|mouse [--rules a,b,...] [--budget S]
(writes results/real_sessions_<data>.md and .csv)
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from learnrules.behavior import load_trials
from learnrules.behavior.psytrack import load_psytrack_rat
from learnrules.data import load_ibl_mouse
from learnrules.inference.evaluation.crossval import session_folds
from learnrules.inference.variational.fit import FitConfig
from learnrules.workflow import cross_validate_rules, fit_model

from report import markdown, setup

RESULTS = Path(__file__).parent / "results"
RULES = "zero,reinforce-baseline,mlp,gru,reinforce-baseline+mlp,reinforce-baseline+gru"
FEATURES = {"rat": ("bias", "s1", "s2"), "mouse": ("bias", "stimulus", "prev_choice", "prev_reward")}
logger = logging.getLogger("real_sessions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=tuple(FEATURES), required=True)
    parser.add_argument("--rules", default=RULES)
    parser.add_argument("--budget", type=float, default=600.0, help="cap of each network fit, seconds")
    args = parser.parse_args()
    setup()
    data = load_psytrack_rat() if args.data == "rat" else load_trials(load_ibl_mouse())
    features = FEATURES[args.data]
    folds = session_folds(data, k=5, seed=0)
    seconds: dict[str, list[float]] = {}

    def fit(train, name, start):  # noqa: ANN001, ANN202
        began = time.perf_counter()
        model = fit_model(train, name, features=features, seed=0, budget_s=args.budget, progress=False,
                          config=FitConfig(param_posterior="none"), start=start)
        seconds.setdefault(name, []).append(time.perf_counter() - began)
        logger.info("%s: %s", name, model.note or ("converged" if model.result.converged else "not converged"))
        return model

    rules = args.rules.split(",")
    cv = cross_validate_rules(data, rules, fit, folds=folds)
    per_fold = cv.groupby(["rule", "fold"]).apply(lambda g: g["loglik"].sum() / g["n_trials"].sum(),
                                                  include_groups=False).unstack("fold")
    reference = per_fold.loc["reinforce-baseline"] if "reinforce-baseline" in per_fold.index else None
    rows = []
    for name in rules:
        scores = per_fold.loc[name].to_numpy()
        row = {"rule": name, "nats_per_trial": scores.mean(), "se_folds": scores.std(ddof=1) / np.sqrt(len(scores)),
               "seconds_per_fit": float(np.mean(seconds[name]))}
        if reference is not None:
            diff = scores - reference.to_numpy()
            row |= {"minus_reinforce_baseline": diff.mean(), "se_diff": diff.std(ddof=1) / np.sqrt(len(diff)),
                    "folds_better": int((diff > 0).sum())}
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("nats_per_trial", ascending=False)
    print(table.to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"real_sessions_{args.data}"
    pd.concat([table, per_fold.reset_index()], keys=["summary", "per_fold"]).to_csv(stem.with_suffix(".csv"))
    name = {"rat": "rat W053 (psytrack)", "mouse": "IBL mouse SWC_054"}[args.data]
    stem.with_suffix(".md").write_text("\n".join([
        f"# Held-out sessions of {name}", "",
        f"5 folds of sessions (`session_folds(k=5, seed=0)`), features {', '.join(features)}; each rule refitted "
        "per fold with the fold's sessions out of the likelihood; held-out log-likelihood per trial (nats) by "
        "the Gaussian filter. `se_folds`, `se_diff`: SE across the 5 folds; `folds_better`: folds in which the "
        "rule beats REINFORCE+baseline.", "",
        markdown(table, digits=5), "",
        "Per fold (nats/trial):", "", markdown(per_fold, index=True, digits=5), "",
        f"Regenerate: `python bench/real_sessions.py --data {args.data} --budget {args.budget:g}`.", ""]))


if __name__ == "__main__":
    main()
