"""The rollout fit of ``learnrules fit --method rollout``: before and after early stopping on held-out sessions.

The command's default networks, (32, 32) relu, MLP and GRU rules, each fitted two ways from the same
initialization under the command's default budget (120 s):

- ``before``: the command's method until stop 23, Adam lr 3e-3 with backprop truncated every 100 trials and
  one step per chunk, until the time budget ends it (nothing decides when it overfits);
- ``adam, early stop`` (:data:`learnrules.workflow.ADAM_ROLLOUT_CONFIG`): the same Adam, with 20% of each
  animal's sessions (:func:`holdout_sessions`; whole sessions, or fifths of an animal recorded as one
  session) left out of the loss; the fit stops when they have not improved for 5 epochs and returns its best
  state on them;
- ``lbfgs, early stop`` (MLP only; :data:`~learnrules.workflow.LBFGS_ROLLOUT_CONFIG`): the same early stopping,
  50 epochs of Liu et al.'s schedule, then full-batch L-BFGS (a GRU's whole-sequence rollout is too slow).

Data, each fit scored on choices it never saw:

- ``simulated``: the cohort of ``neural_speed.py`` (12 training animals x 10,000 trials of noise-free
  REINFORCE), scored on 4 held-out animals rolled out from the mean fitted initial weights; the oracle is the
  true rule from the true initial weights;
- ``rat``: rat W053 of the psytrack wheel (20,000 trials, 80 sessions; features bias, s1, s2), held-out
  sessions in 3 folds (:func:`session_folds`): held out of the likelihood (their choices still move the
  weights; until stop 25 they were masked), scored along the rollout through all trials, as ``learnrules fit
  --heldout`` does. The early-stopping sessions are drawn from the rest.

Run: ``.venv/bin/python bench/rollout_method.py [--budget 120] [--data simulated,rat]``; writes
bench/results/rollout_method[_<data>].md/.csv (the suffix when ``--data`` is one of them).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from neural_vi import speed_cohort

from learnrules.behavior.psytrack import load_psytrack_rat
from learnrules.inference.evaluation.crossval import session_folds
from learnrules.inference.rollout.early_stopping import holdout_sessions
from learnrules.inference.rollout.rollout import predict_heldout, rollout_loglik
from learnrules.inference.rollout.rollout_fit import RolloutConfig, RolloutResult, fit_rollout
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import GRURule, MLPRule
from learnrules.workflow import ADAM_ROLLOUT_CONFIG, LBFGS_ROLLOUT_CONFIG

from report import setup, write_report

OUT = Path(__file__).resolve().parent / "results"
BEFORE = RolloutConfig(epochs=10_000, batch_size=None, log_every=20)  # the command's rollout until stop 23


def fit_all(train: CohortTensors, budget: float) -> dict[tuple[str, str], RolloutResult]:
    """Fit the command's default MLP and GRU each way, each from the same initialization."""
    held = holdout_sessions(train, seed=0)
    methods = {"before": (BEFORE, None), "adam, early stop": (ADAM_ROLLOUT_CONFIG, held),
               "lbfgs, early stop": (LBFGS_ROLLOUT_CONFIG, held)}
    fits = {}
    for kind, rule in (("mlp", MLPRule), ("gru", GRURule)):
        for method, (config, holdout) in methods.items():
            if kind == "gru" and config.optimizer == "lbfgs":
                continue
            fits[kind, method] = fit_rollout(train, rule(train.n_features, hidden=(32, 32), seed=0),
                                             config=replace(config, time_budget_s=budget), holdout=holdout,
                                             seed=0, progress=False)
    return fits


def row(data: str, fold: int | str, key: tuple[str, str], res: RolloutResult, heldout_ll: float) -> dict[str, object]:
    return {"data": data, "fold": fold, "rule": key[0], "method": key[1], "epochs": res.n_steps,
            "fit_s": round(res.elapsed_s, 1), "stop": res.stop_reason, "heldout_ll": round(heldout_ll, 5)}


def simulated(budget: float) -> tuple[list[dict[str, object]], str]:
    truth, sim, train, test = speed_cohort(argparse.Namespace(animals=12, trials=10_000))
    params = {k: torch.as_tensor(v) for k, v in sim.params.items()}
    oracle = predict_heldout(test, truth, params, init_weights=torch.zeros(2)).loglik_per_trial
    rows = []
    for key, res in fit_all(train, budget).items():
        score = predict_heldout(test, res.rule, {}, init_weights=res.init_weights.mean(0)).loglik_per_trial
        rows.append(row("simulated", "-", key, res, score))
    return rows, f"simulated oracle (true rule, true initial weights) held-out LL {oracle:.5f}"


def rat(budget: float, k: int = 3) -> list[dict[str, object]]:
    data = load_psytrack_rat()
    features = ("bias", "s1", "s2")
    full = CohortTensors.from_trials(data, features, dtype=torch.float64)
    rows = []
    for fold in session_folds(data, k=k, seed=0):
        train = CohortTensors.from_trials(fold.train, features, dtype=torch.float64)
        scored = torch.as_tensor(fold.score_mask[data.subjects[0]]).unsqueeze(0)
        for key, res in fit_all(train, budget).items():
            ll = rollout_loglik(full, res.rule, {}, res.init_weights)
            rows.append(row("rat W053", fold.index, key, res, float(ll[scored].mean())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="wall-time budget of each fit, s")
    parser.add_argument("--data", default="simulated,rat", help="comma-separated: simulated, rat")
    args = parser.parse_args()
    setup()
    start, rows, notes = time.perf_counter(), [], []
    if "simulated" in args.data:
        sim_rows, oracle = simulated(args.budget)
        rows += sim_rows
        notes.append(oracle)
    if "rat" in args.data:
        rows += rat(args.budget)
    table = pd.DataFrame(rows)
    means = table.groupby(["data", "rule", "method"], sort=False)["heldout_ll"].mean().round(5)
    notes += [f"budget {args.budget:.0f} s per fit; (32, 32) relu networks, seed 0, the same for both methods",
              f"torch {torch.__version__}, 1 thread; whole run {time.perf_counter() - start:.0f} s"]
    print(table.to_string(index=False))
    print(means.to_string())
    stem = OUT / ("rollout_method" + (f"_{args.data}" if args.data in ("simulated", "rat") else ""))
    write_report(stem, "rollout_method", __doc__.split("\n")[0], notes, table, means.reset_index())


if __name__ == "__main__":
    main()
