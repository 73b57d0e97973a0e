"""Recovery of a known rule by an MLP rule fit with deterministic rollout (the Liu et al. 2025 setting).

Simulate noise-free REINFORCE agents (learnrules.synthetic, default IBL-like task), fit an MLPRule by
truncated-BPTT rollout on the training animals under a wall-time budget, then report:

- relative RMSE (and correlation) of the inferred update against the true update on the visited states
  (the true weights and trial outcomes of the training animals), per weight and pooled;
- train log-likelihood per trial: fitted MLP vs oracle (true rule, true parameters, true initial weights);
- held-out-animal log-likelihood per trial of new simulated animals under the shared fitted rule vs the
  oracle under the same protocol: (a) initial weights fitted (rule frozen) on each animal's first 100 trials,
  scored on the rest; (b) initial weights = mean of the training animals'.

Usage: python bench/neural_recovery.py [--budget 480] [--animals 100] [--trials 2000] [--overrides JSON]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from learnrules.inference.rollout.rollout import predict_heldout, rollout_loglik
from learnrules.inference.rollout.rollout_fit import RolloutConfig, fit_rollout
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import MLPRule
from learnrules.models.neural_grid import expected_update, trial_mix
from learnrules.other_rules import Reinforce
from learnrules.synthetic import simulate_cohort

from report import setup

RESULTS = Path(__file__).parent / "results"
FIT_TRIALS = 100


def update_recovery(sim, rule, cohort: CohortTensors, index: np.ndarray, params: dict | None = None) -> list[dict]:
    """Recovery of the true update by ``rule`` on the visited states (true weights, observed trials).

    Per weight and pooled: relative RMSE, correlation and slope of the per-trial update; ``rel_rmse_expected``,
    the relative RMSE of the *expected* update (averaged over the choice under the true policy, the reward
    following from the correct side); ``rel_rmse_field``, that of the drift field (the expected update
    averaged over the task's stimuli too, :func:`~learnrules.models.neural_grid.expected_update`), which is
    what the choices pin down tightly; and ``unrewarded_share``, the fraction of the squared error on
    unrewarded trials.
    """
    dtype = torch.get_default_dtype()
    params = params or {}
    true_params = {k: torch.as_tensor(v, dtype=dtype) for k, v in sim.params.items()}
    w = torch.as_tensor(sim.weights[index], dtype=dtype)
    ctx = torch.zeros(*w.shape[:2], 0, dtype=dtype)
    x, y, r = cohort.features, cohort.choice, cohort.reward
    side = torch.where(r > 0.5, y, 1.0 - y)
    p_right = torch.sigmoid((w * x).sum(-1))

    def expected(rule_, params_):  # noqa: ANN001, ANN202
        total = torch.zeros_like(w)
        for choice, prob in ((1.0, p_right), (0.0, 1.0 - p_right)):
            y_cf = torch.full_like(y, choice)
            total += prob.unsqueeze(-1) * rule_.drift(params_, w, x, y_cf, (y_cf == side).to(dtype), ctx)
        return total.numpy()

    with torch.no_grad():
        fitted = rule.drift(params, w, x, y, r, ctx).numpy()
        mean_true, mean_fitted = expected(sim.rule, true_params), expected(rule, params)
    mix = trial_mix(x[..., list(sim.feature_names).index("stimulus")][cohort.observed].numpy(), sim.feature_names)
    field_true = expected_update(sim.rule, true_params, w, *mix).numpy()
    field_fitted = expected_update(rule, params, w, *mix).numpy()
    true = sim.updates[index]
    unrewarded = (r.numpy() < 0.5)[..., None] & np.ones(true.shape, bool)
    rows = []
    for name, sl in [*((n, np.s_[..., i]) for i, n in enumerate(sim.feature_names)), ("all", np.s_[...])]:
        a, b = true[sl].ravel(), fitted[sl].ravel()
        sq = (a - b) ** 2
        ea, eb = mean_true[sl].ravel(), mean_fitted[sl].ravel()
        fa, fb = field_true[sl].ravel(), field_fitted[sl].ravel()
        rows.append({"weight": name, "true_rms": float(np.sqrt(np.mean(a**2))),
                     "rel_rmse": float(np.sqrt(np.mean(sq)) / np.sqrt(np.mean(a**2))),
                     "corr": float(np.corrcoef(a, b)[0, 1]), "slope": float(a @ b / (a @ a)),
                     "rel_rmse_expected": float(np.sqrt(np.mean((ea - eb) ** 2)) / np.sqrt(np.mean(ea**2))),
                     "rel_rmse_field": float(np.sqrt(np.mean((fa - fb) ** 2)) / np.sqrt(np.mean(fa**2))),
                     "unrewarded_share": float(sq[unrewarded[sl].ravel()].sum() / sq.sum()) if sq.sum() else 0.0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--animals", type=int, default=100)
    parser.add_argument("--heldout", type=int, default=100)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--budget", type=float, default=480.0, help="wall-time budget of the fit, s")
    parser.add_argument("--hidden", type=str, default="32,32")
    parser.add_argument("--overrides", type=str, default="{}", help="JSON RolloutConfig overrides")
    parser.add_argument("--name", type=str, default="neural_recovery")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--known-init", action="store_true",
                        help="fix the training animals' initial weights at the truth (Liu et al.'s main-text setting)")
    args = parser.parse_args()
    setup()

    rule = Reinforce()
    sim = simulate_cohort(rule, n_animals=args.animals + args.heldout, n_trials=args.trials, seed=args.seed)
    train_idx, test_idx = np.arange(args.animals), np.arange(args.animals, args.animals + args.heldout)
    train, test = sim.tensors(train_idx), sim.tensors(test_idx)
    params = {k: torch.as_tensor(v) for k, v in sim.params.items()}
    true_w0 = torch.as_tensor(sim.weights[:, 0])

    config = RolloutConfig(**{"epochs": 100_000, "lr": 3e-3, "tbptt": 500, "batch_size": 10, "log_every": 5,
                              "time_budget_s": args.budget, **json.loads(args.overrides)})
    mlp = MLPRule(train.n_features, hidden=tuple(int(h) for h in args.hidden.split(",")), seed=args.seed)
    if args.known_init:
        config = dataclasses.replace(config, init_weights="fixed")
    fit = fit_rollout(train, mlp, config=config, seed=args.seed, progress=False,
                      init_weights=true_w0[train_idx] if args.known_init else None)

    n_obs = float(train.observed.sum())
    oracle_train = float(rollout_loglik(train, rule, params, true_w0[train_idx]).sum()) / n_obs
    recovery = update_recovery(sim, fit.rule, train, train_idx)
    mean_w0 = fit.init_weights.mean(0)
    rows = {
        "heldout_fit100_mlp": predict_heldout(test, fit.rule, {}, fit_trials=FIT_TRIALS).loglik_per_trial,
        "heldout_fit100_oracle": predict_heldout(test, rule, params, fit_trials=FIT_TRIALS).loglik_per_trial,
        "heldout_mean_mlp": predict_heldout(test, fit.rule, {}, init_weights=mean_w0).loglik_per_trial,
        "heldout_mean_oracle": predict_heldout(test, rule, params, init_weights=mean_w0).loglik_per_trial,
        "heldout_true_w0_oracle": predict_heldout(test, rule, params,
                                                  init_weights=true_w0[test_idx]).loglik_per_trial,
    }
    summary = {
        "known_init": args.known_init, "animals": args.animals, "heldout_animals": args.heldout, "trials": args.trials,
        "alpha": json.dumps(np.round(sim.params["alpha"], 4).tolist()),
        "epochs": fit.n_steps, "adam_steps": fit.n_updates, "fit_wall_s": round(fit.elapsed_s, 1),
        "stop": fit.stop_reason, "config": json.dumps({k: getattr(config, k) for k in
                                                       ("lr", "tbptt", "batch_size", "update", "init_lr",
                                                        "init_weights")}),
        "train_ll_mlp": float(fit.train_loglik.sum()) / n_obs, "train_ll_oracle": oracle_train,
        **rows,
        "gap_heldout_fit100": rows["heldout_fit100_mlp"] - rows["heldout_fit100_oracle"],
        "gap_heldout_mean": rows["heldout_mean_mlp"] - rows["heldout_mean_oracle"],
        **{f"rel_rmse_{r['weight']}": r["rel_rmse"] for r in recovery},
        **{f"rel_rmse_expected_{r['weight']}": r["rel_rmse_expected"] for r in recovery},
        **{f"corr_{r['weight']}": r["corr"] for r in recovery},
        **{f"slope_{r['weight']}": r["slope"] for r in recovery},
    }
    write(args.name, summary, recovery, fit.losses)


def write(name: str, summary: dict, recovery: list[dict], losses: tuple[float, ...]) -> None:
    """Print the tables and write results/<name>.md and .csv."""
    RESULTS.mkdir(exist_ok=True)
    flat = pd.DataFrame([summary])
    flat.to_csv(RESULTS / f"{name}.csv", index=False)
    rec = pd.DataFrame(recovery)
    fmt = lambda v: f"{v:.5f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"# {name}", "", f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch "
             f"{torch.__version__}, 1 thread. Noise-free REINFORCE (learnrules.synthetic defaults), MLP rule fit "
             "by deterministic truncated-BPTT rollout. Targets: pooled relative RMSE of the update < 0.30; "
             "held-out gap to the oracle within 0.005 nats/trial.", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in summary.items()]
    lines += ["", "Update recovery on visited states (training animals):", "",
              "| weight | true RMS | rel. RMSE | corr | slope | rel. RMSE, expected update | error share unrewarded |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['weight']} | {r['true_rms']:.5f} | {r['rel_rmse']:.3f} | {r['corr']:.3f} | {r['slope']:.3f} | "
              f"{r['rel_rmse_expected']:.3f} | {r['unrewarded_share']:.2f} |" for r in recovery]
    every = max(1, len(losses) // 10)
    lines += ["", "Train NLL/trial by epoch: " + ", ".join(f"{i + 1}: {loss:.5f}" for i, loss in
                                                      enumerate(losses) if i % every == 0 or i == len(losses) - 1)]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    print(rec.to_string(index=False))


if __name__ == "__main__":
    main()
