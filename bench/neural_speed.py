"""Time to a held-out score: MLP-rule fits by L-BFGS against Liu et al.'s truncated-backprop schedule.

The cohort of ``neural_vi.py speed`` (12 training + 4 held-out animals x 10,000 trials, noise-free
REINFORCE), one MLP rule (16, 16) at the same initialization for every method, all in one process, 1 thread:

- ``lbfgs``: full-batch L-BFGS (strong Wolfe, 10 iterations per step) on the exact rollout likelihood,
  solved in parallel over trials (:mod:`~learnrules.inference.parallel_rollout`); held-out score after
  every step.
- ``lbfgs (early stop)``: the same fit, stopped when 4 further validation animals (simulated apart, seed 1)
  have not improved for 5 steps and returned at its best validation step; that state alone is scored on
  the held-out animals, so nothing about them selects it.
- ``warm-up + lbfgs`` and its ``(early stop)``: the same two after ``--warmup`` epochs (default 50) of the
  paper's schedule below (``RolloutConfig(warmup_epochs=...)``), which lead L-BFGS past the narrow valleys it
  settles in from some initializations.
- ``paper``: Liu, Geadah & Pillow's schedule, Adam lr 3e-3 with backprop truncated every 100 trials and one
  step per epoch over all animals, 1,000 epochs, stepped trial by trial as their code does; held-out score
  every 2 epochs.
- ``paper (parallel)``: the same schedule, each epoch's truncated gradient solved in parallel (our
  implementation of their method: the same path to rounding until the schedule turns unstable).

The held-out score is the rollout log-likelihood per trial of the 4 held-out animals from the mean fitted
initial weights. Times exclude the held-out evaluations (``RolloutResult.val_train_s``). The target is the
best score the paper's schedule reaches in its 1,000 epochs (stepped trial by trial; if not run, solved in
parallel); each method's time to reach it is the training time at its first evaluation at or above it (for the
early-stopped fit: the whole fit's time, validations included, if its returned state scores at or above it).

Run: ``.venv/bin/python bench/neural_speed.py [--activation tanh|relu] [--seed N] [--methods A,B] [--tag T]``;
writes bench/results/neural_speed_<activation>[_seed<N>][_<T>].md/.csv and the held-out paths (_paths.csv).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from neural_vi import cohort_of, speed_cohort

from learnrules.inference.rollout import predict_heldout
from learnrules.inference.rollout_fit import RolloutConfig, RolloutResult, fit_rollout
from learnrules.models.neural import MLPRule
from learnrules.synthetic import simulate_cohort

from report import setup, write_report

OUT = Path(__file__).resolve().parent / "results"
PAPER = {"lr": 3e-3, "tbptt": 100, "update": "sequence"}  # Liu et al.'s schedule: Adam, truncated every 100 trials


def lbfgs(a: argparse.Namespace, *, warmup: bool = False, patience: int | None = None) -> RolloutConfig:
    return RolloutConfig(epochs=1000, optimizer="lbfgs", lbfgs_iter=10, time_budget_s=a.lbfgs_budget, patience=patience,
                         warmup_epochs=a.warmup if warmup else 0, **PAPER)


def paper(solver: str) -> RolloutConfig:
    return RolloutConfig(epochs=1000, eval_every=2, log_every=50, solver=solver, **PAPER)


METHODS = {
    "lbfgs": lambda a: lbfgs(a),
    "lbfgs (early stop)": lambda a: lbfgs(a, patience=5),
    "warm-up + lbfgs": lambda a: lbfgs(a, warmup=True),
    "warm-up + lbfgs (early stop)": lambda a: lbfgs(a, warmup=True, patience=5),
    "paper (parallel)": lambda a: paper("parallel"),
    "paper": lambda a: paper("sequential"),
}
EARLY_STOPPED = {"lbfgs (early stop)", "warm-up + lbfgs (early stop)"}  # validated on animals of their own


def time_to(res: RolloutResult, target: float) -> float:
    """Training seconds at the first held-out evaluation scoring at least ``target`` (nan if none)."""
    hit = np.nonzero(np.asarray(res.val_loglik) >= target)[0]
    return float(res.val_train_s[hit[0]]) if len(hit) else float("nan")


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
    validation = cohort_of(simulate_cohort(truth, n_animals=4, n_trials=args.trials, sigma=0.0, seed=1),
                           np.arange(4))
    fits, scores = {}, {}
    for name in args.methods.split(","):
        start = time.perf_counter()
        network = MLPRule(2, hidden=(16, 16), seed=args.seed, activation=args.activation)
        fits[name] = res = fit_rollout(train, network, config=METHODS[name](args), seed=0, progress=False,
                                       validation=validation if name in EARLY_STOPPED else test)
        if name in EARLY_STOPPED:
            scores[name] = predict_heldout(test, res.rule, {}, init_weights=res.init_weights.mean(0)).loglik_per_trial
        logging.info("%s: %.0f s, held-out %.5f", name, time.perf_counter() - start,
                     scores.get(name, max(res.val_loglik)))
    reference = next((m for m in ("paper", "paper (parallel)") if m in fits), None)
    paths_on_test = [max(f.val_loglik) for m, f in fits.items() if m not in EARLY_STOPPED]
    target = max(fits[reference].val_loglik) if reference else max(paths_on_test, default=float("nan"))
    rows = []
    for name, res in fits.items():
        val = np.asarray(res.val_loglik)
        best_s, train_s = res.val_train_s[int(val.argmax())], res.val_train_s[-1]
        if name in EARLY_STOPPED:  # its validations are part of the method: the whole fit counts
            best = final = scores[name]
            train_s = res.elapsed_s
            reach = train_s if best >= target else float("nan")
        else:
            best, final, reach = float(val.max()), float(val[-1]), time_to(res, target)
        rows.append({"method": name, "steps": res.n_steps, "train_s": round(train_s, 1),
                     "best_heldout_ll": round(best, 5), "train_s_to_best": round(best_s, 1),
                     "final_heldout_ll": round(final, 5), "train_s_to_target": round(reach, 1)})
    table = pd.DataFrame(rows)
    to_target = table.set_index("method")["train_s_to_target"]
    for name in ("paper", "paper (parallel)"):
        column = "speedup_vs_" + name.replace(" (", "_").rstrip(")")
        table[column] = (to_target.get(name, np.nan) / table["train_s_to_target"]).round(1)
    notes = [f"cohort: 12 train + 4 held-out animals x 10,000 trials, noise-free REINFORCE alpha "
             f"{sim.params['alpha'].tolist()}; MLP (16, 16) {args.activation}, seed {args.seed}, for every method",
             f"oracle (true rule, true initial weights) held-out LL {oracle:.5f}",
             f"warm-up + lbfgs: {args.warmup} epochs of the paper's schedule, then L-BFGS",
             "early stop: best = final = the held-out LL of the returned state; train_s = the whole fit's "
             "wall time, its validations included (they are part of the method); train_s_to_best = training time "
             "to its best validation step; train_s_to_target = train_s when the returned state reaches the target",
             (f"target: the best held-out LL of {reference} in 1,000 epochs" if reference else
              "target (the paper's schedule not run): the best held-out LL of the methods run") + f", {target:.5f}",
             f"torch {torch.__version__}, 1 thread"]
    print(table.to_string(index=False))
    stem = OUT / (f"neural_speed_{args.activation}" + (f"_seed{args.seed}" if args.seed else "")
                  + (f"_{args.tag}" if args.tag else ""))
    write_report(stem, f"neural_speed ({args.activation})", __doc__.split("\n")[0], notes, table)
    paths = pd.DataFrame([(name, "validation" if name in EARLY_STOPPED else "held-out", t, v)
                          for name, res in fits.items() for t, v in zip(res.val_train_s, res.val_loglik, strict=True)],
                         columns=["method", "animals", "train_s", "loglik"])
    paths.to_csv(f"{stem}_paths.csv", index=False)


if __name__ == "__main__":
    main()
