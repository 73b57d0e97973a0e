"""Time to a held-out score: MLP-rule fits by L-BFGS against Liu et al.'s truncated-backprop schedule.

The cohort of ``neural_vi.py speed`` (12 training + 4 test animals x 10,000 trials, noise-free REINFORCE),
one MLP rule (16, 16) at the same initialization for every method, all in one process, 1 thread:

- ``lbfgs``: full-batch L-BFGS (strong Wolfe, 10 iterations per step) on the exact rollout likelihood,
  solved in parallel over trials (:mod:`~learnrules.inference.rollout.parallel_rollout`), for ``--lbfgs-budget`` s.
- ``warm-up + lbfgs``: the same after ``--warmup`` epochs (default 50) of the paper's schedule below
  (``RolloutConfig(warmup_epochs=...)``), which lead L-BFGS past the narrow valleys it settles in from some
  initializations.
- ``paper``: Liu, Geadah & Pillow's schedule, Adam lr 3e-3 with backprop truncated every 100 trials and one
  step per epoch over all animals, 1,000 epochs, stepped trial by trial as their code does.
- ``paper (parallel)``: the same schedule, each epoch's truncated gradient solved in parallel (our
  implementation of their method: the same path to rounding until the schedule turns unstable).

Every method is evaluated (every step; the paper every 2 epochs) on 4 validation animals (simulated apart,
seed 1) and, for the record only, on the 4 test animals (``fit_rollout(monitor=...)``); scores are rollout
log-likelihoods per trial from the mean fitted initial weights, and times are training times (evaluations
excluded, ``RolloutResult.val_train_s``). Two protocols, each the same for every method:

- ``test path``: the test score along the path; the target is the best the paper's schedule reaches in its
  1,000 epochs (stepped trial by trial; if not run, solved in parallel), a method's time the first
  evaluation at or above it. The test animals select the state: an upper bound for every method.
- ``selected``: at each time a fit returns its best state on the validation animals so far (keep the best
  checkpoint, as early stopping does); the target is the test score of the state the paper's schedule
  returns after its 1,000 epochs, a method's time the first at which its returned state scores at or above
  it. Nothing about the test animals selects anything. ``patience 5``: where early stopping after 5
  evaluations without a better validation score (counted after the warm-up) would have ended the fit, and
  the test score of the state it returns.

Run: ``.venv/bin/python bench/neural_speed.py [--activation tanh|relu] [--seed N] [--methods A,B] [--tag T]``;
writes bench/results/neural_speed_<activation>[_seed<N>][_<T>].md/.csv and the paths (_paths.csv). Result
files written before this protocol (tanh seeds 0-2, relu seed 0, and the _warmup files) hold the test path
and separately run early-stopped fits instead.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from neural_vi import speed_cohort

from learnrules.inference.rollout.early_stopping import early_stop_index
from learnrules.inference.rollout.rollout import predict_heldout
from learnrules.inference.rollout.rollout_fit import RolloutConfig, RolloutResult, fit_rollout
from learnrules.models.neural import MLPRule
from learnrules.synthetic import simulate_cohort

from report import setup, write_report

OUT = Path(__file__).resolve().parent / "results"
PAPER = {"lr": 3e-3, "tbptt": 100, "update": "sequence"}  # Liu et al.'s schedule: Adam, truncated every 100 trials
PATIENCE = 5


def lbfgs(a: argparse.Namespace, *, warmup: bool = False) -> RolloutConfig:
    return RolloutConfig(epochs=1000, optimizer="lbfgs", lbfgs_iter=10, time_budget_s=a.lbfgs_budget,
                         warmup_epochs=a.warmup if warmup else 0, **PAPER)


def paper(solver: str) -> RolloutConfig:
    return RolloutConfig(epochs=1000, eval_every=2, log_every=50, solver=solver, **PAPER)


METHODS = {
    "lbfgs": lambda a: lbfgs(a),
    "warm-up + lbfgs": lambda a: lbfgs(a, warmup=True),
    "paper (parallel)": lambda a: paper("parallel"),
    "paper": lambda a: paper("sequential"),
}


def returned_scores(res: RolloutResult) -> np.ndarray:
    """Test score of the state a fit returns at each evaluation: its best on the validation animals so far."""
    val = np.asarray(res.val_loglik)
    best_so_far = np.array([int(np.argmax(val[: i + 1])) for i in range(len(val))])
    return np.asarray(res.monitor_loglik)[best_so_far]


def patience_stop(res: RolloutResult, config: RolloutConfig) -> int:
    """Index of the evaluation at which early stopping with ``PATIENCE`` would end the fit (the last if never)."""
    stop = early_stop_index(res.val_loglik, patience=PATIENCE, eval_every=config.eval_every,
                            warmup_epochs=config.warmup_epochs)
    return len(res.val_loglik) - 1 if stop is None else stop


def first_time(scores: np.ndarray, times: tuple[float, ...], target: float) -> float:
    """Training seconds at the first evaluation whose score is at least ``target`` (nan if none)."""
    hit = np.nonzero(scores >= target)[0]
    return float(times[hit[0]]) if len(hit) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activation", default="tanh", choices=("tanh", "relu"))
    parser.add_argument("--lbfgs-budget", type=float, default=150.0, help="L-BFGS wall-time budget, s")
    parser.add_argument("--warmup", type=int, default=50, help="Adam epochs before L-BFGS in the warm-up methods")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of the methods")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network's initialization")
    parser.add_argument("--tag", default="", help="suffix of the result files (e.g. for a subset of the methods)")
    args = parser.parse_args()
    setup()
    args.animals, args.trials = 12, 10_000
    truth, sim, train, test = speed_cohort(args)
    params = {k: torch.as_tensor(v) for k, v in sim.params.items()}
    oracle = predict_heldout(test, truth, params, init_weights=torch.zeros(2)).loglik_per_trial
    validation = simulate_cohort(truth, n_animals=4, n_trials=args.trials, sigma=0.0, seed=1).tensors()
    fits, configs = {}, {}
    for name in args.methods.split(","):
        start = time.perf_counter()
        network = MLPRule(2, hidden=(16, 16), seed=args.seed, activation=args.activation)
        configs[name] = METHODS[name](args)
        fits[name] = res = fit_rollout(train, network, config=configs[name], seed=0, progress=False,
                                       validation=validation, monitor=test)
        logging.info("%s: %.0f s, best test %.5f, returned %.5f", name, time.perf_counter() - start,
                     max(res.monitor_loglik), returned_scores(res)[-1])
    reference = next((m for m in ("paper", "paper (parallel)") if m in fits), None)
    if reference:
        target_path = max(fits[reference].monitor_loglik)
        target_selected = returned_scores(fits[reference])[-1]
    else:  # the paper's schedule not run: the best of the methods run
        target_path = max(max(f.monitor_loglik) for f in fits.values())
        target_selected = max(returned_scores(f)[-1] for f in fits.values())
    rows = []
    for name, res in fits.items():
        returned, stop = returned_scores(res), patience_stop(res, configs[name])
        rows.append({"method": name, "steps": res.n_steps, "train_s": round(res.val_train_s[-1], 1),
                     "path_best_ll": round(max(res.monitor_loglik), 5),
                     "path_s_to_target": round(first_time(np.asarray(res.monitor_loglik), res.val_train_s,
                                                          target_path), 1),
                     "selected_ll": round(returned[-1], 5),
                     "selected_s_to_target": round(first_time(returned, res.val_train_s, target_selected), 1),
                     "patience5_ll": round(returned[stop], 5), "patience5_s": round(res.val_train_s[stop], 1)})
    table = pd.DataFrame(rows)
    if reference:
        for protocol in ("path", "selected"):
            column = table[f"{protocol}_s_to_target"]
            table[f"{protocol}_speedup"] = (column[table["method"] == reference].iloc[0] / column).round(1)
    notes = [f"cohort: 12 train + 4 validation + 4 test animals x 10,000 trials, noise-free REINFORCE alpha "
             f"{sim.params['alpha'].tolist()}; MLP (16, 16) {args.activation}, seed {args.seed}, for every method",
             f"oracle (true rule, true initial weights) test LL {oracle:.5f}",
             f"warm-up + lbfgs: {args.warmup} epochs of the paper's schedule, then L-BFGS ({args.lbfgs_budget:.0f} s)",
             f"test path: target {target_path:.5f} (best test LL along {reference or 'the methods run'}); "
             "path_s_to_target: training s at the first evaluation at or above it",
             f"selected: target {target_selected:.5f} (test LL of the best-validation state "
             f"{reference or 'the best of the methods run'} returns); selected_s_to_target: training s at which "
             "a method's best-validation state so far first scores at or above it",
             f"patience5: early stopping after {PATIENCE} evaluations without a better validation score: the test LL "
             "of the state it returns and the training s at which it stops",
             "speedup: the paper's seconds to target / the method's (same protocol, same run)",
             f"torch {torch.__version__}, 1 thread"]
    print(table.to_string(index=False))
    stem = OUT / (f"neural_speed_{args.activation}" + (f"_seed{args.seed}" if args.seed else "")
                  + (f"_{args.tag}" if args.tag else ""))
    write_report(stem, f"neural_speed ({args.activation})", __doc__.split("\n")[0], notes, table)
    paths = pd.DataFrame([(name, t, v, m) for name, res in fits.items()
                          for t, v, m in zip(res.val_train_s, res.val_loglik, res.monitor_loglik, strict=True)],
                         columns=["method", "train_s", "validation_ll", "test_ll"])
    paths.to_csv(f"{stem}_paths.csv", index=False)

if __name__ == "__main__":
    main()
