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

Usage: python bench/real_sessions.py --data rat|mouse [--rules a,b,...] [--folds 0,1,...] [--budget S]
(writes results/real_sessions_<data>.md and results/real_sessions_<data>_folds.csv)
"""

from __future__ import annotations

import argparse
import fcntl
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


def run_folds(args: argparse.Namespace, data, features: tuple[str, ...]) -> pd.DataFrame:  # noqa: ANN001
    """Fit ``args.rules`` on the folds ``args.folds``; one row per rule and fold (score, seconds)."""
    folds = session_folds(data, k=5, seed=0)
    chosen = sorted(set(args.folds)) if args.folds else list(range(len(folds)))
    seconds: dict[tuple[str, int], float] = {}
    current = {"fold": chosen[0]}

    def fit(train, name, start):  # noqa: ANN001, ANN202
        began = time.perf_counter()
        model = fit_model(train, name, features=features, seed=0, budget_s=args.budget, progress=False,
                          config=FitConfig(param_posterior="none"), start=start)
        seconds[(name, current["fold"])] = time.perf_counter() - began
        logger.info("%s: %s", name, model.note or ("converged" if model.result.converged else "not converged"))
        return model

    rows = []
    for fold in chosen:  # one fold at a time: the seconds are then attributed to their fold
        current["fold"] = fold
        cv = cross_validate_rules(data, args.rules.split(","), fit, folds=[folds[fold]])
        for name, g in cv.groupby("rule"):
            rows.append({"rule": name, "fold": fold, "nats_per_trial": g["loglik"].sum() / g["n_trials"].sum(),
                         "seconds": seconds[(name, fold)]})
    return pd.DataFrame(rows)


def merge(stem: Path, new: pd.DataFrame) -> pd.DataFrame:
    """Replace the stored rows of these rules and folds (runs of other rules or folds may run in parallel)."""
    path = stem.with_name(stem.name + "_folds.csv")
    with open(stem.with_name("." + stem.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = pd.read_csv(path) if path.exists() else new.iloc[:0]
        keys = set(zip(new["rule"], new["fold"], strict=True))
        old = old[[k not in keys for k in zip(old["rule"], old["fold"], strict=True)]]
        table = pd.concat([old, new], ignore_index=True).sort_values(["rule", "fold"])
        table.to_csv(path, index=False)
    return table


def render(table: pd.DataFrame, data_name: str, features: tuple[str, ...], budget: float) -> str:
    per_fold = table.pivot(index="rule", columns="fold", values="nats_per_trial")
    complete = per_fold.dropna()  # rules scored on every fold
    reference = complete.loc["reinforce-baseline"] if "reinforce-baseline" in complete.index else None
    rows = []
    for name, scores in complete.iterrows():
        row = {"rule": name, "nats_per_trial": scores.mean(), "se_folds": scores.std(ddof=1) / np.sqrt(len(scores)),
               "seconds_per_fit": float(table.loc[table["rule"] == name, "seconds"].mean())}
        if reference is not None:
            diff = scores - reference
            row |= {"minus_reinforce_baseline": diff.mean(), "se_diff": diff.std(ddof=1) / np.sqrt(len(diff)),
                    "folds_better": int((diff > 0).sum())}
        rows.append(row)
    summary = pd.DataFrame(rows).sort_values("nats_per_trial", ascending=False)
    print(summary.to_string(index=False))
    name = {"rat": "rat W053 (psytrack)", "mouse": "IBL mouse SWC_054"}[data_name]
    return "\n".join([
        f"# Held-out sessions of {name}", "",
        f"5 folds of sessions (`session_folds(k=5, seed=0)`), features {', '.join(features)}; each rule refitted "
        "per fold with the fold's sessions out of the likelihood; held-out log-likelihood per trial (nats) by "
        "the Gaussian filter. `se_folds`, `se_diff`: SE across the 5 folds; `folds_better`: folds in which the "
        "rule beats REINFORCE+baseline; `seconds_per_fit`: a neural or hybrid rule's network stage, on one core.",
        "", markdown(summary, digits=5), "",
        "Per fold (nats/trial):", "", markdown(per_fold, index=True, digits=5), "",
        f"Regenerate: `python bench/real_sessions.py --data {data_name} --budget {budget:g}` (or one process per "
        "rule and fold with `--rules` and `--folds`: their rows are merged).", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=tuple(FEATURES), required=True)
    parser.add_argument("--rules", default=RULES)
    parser.add_argument("--folds", type=lambda text: [int(f) for f in text.split(",")], default=None,
                        help="comma-separated fold indices (0-4) to fit; default all")
    parser.add_argument("--budget", type=float, default=600.0, help="cap of each network fit, seconds")
    args = parser.parse_args()
    setup()
    data = load_psytrack_rat() if args.data == "rat" else load_trials(load_ibl_mouse())
    features = FEATURES[args.data]
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"real_sessions_{args.data}"
    table = merge(stem, run_folds(args, data, features))
    stem.with_suffix(".md").write_text(render(table, args.data, features, args.budget))


if __name__ == "__main__":
    main()
