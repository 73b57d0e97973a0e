"""Deterministic rollouts solved in parallel over trials (Newton + scan) against the sequential loop.

Two tables, each method run in the same process, 1 thread:

- ``solve``: one loss-and-gradient evaluation of a rollout (12 animals x T trials) for three rules, by the
  sequential loop and by :func:`~learnrules.inference.rollout.parallel_rollout.parallel_trajectory` started cold
  (initial weights held constant) or warm (from the solution at parameters 0.1% away, as an optimizer's
  next evaluation is); the fastest of 3 runs, Newton linearizations, and the largest gradient difference.
- ``fit``: :func:`~learnrules.inference.rollout.rollout_fit.fit_rollout` on the cohort of ``neural_vi.py speed``
  (12 x 10,000 noise-free REINFORCE, MLP (16, 16)) with each solver: L-BFGS steps and Liu et al.'s Adam
  schedule (truncated backprop every 100 trials, one step per epoch); the two paths must coincide.

Run: ``.venv/bin/python bench/parallel_rollout.py``; writes bench/results/parallel_rollout.md/.csv.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from neural_vi import speed_cohort

from learnrules.inference.rollout.parallel_rollout import parallel_trajectory
from learnrules.inference.rollout.rollout import rollout_trajectory, trial_loglik
from learnrules.inference.rollout.rollout_fit import RolloutConfig, fit_rollout
from learnrules.models.neural import GRURule, MLPRule, rule_network
from learnrules.other_rules import Reinforce, ReinforceBaseline
from learnrules.synthetic import simulate_cohort

from report import markdown, setup

OUT = Path(__file__).resolve().parent / "results"


def _rules() -> dict[str, tuple]:
    # Networks at their default initialization, as a fit starts. A larger output scale makes random networks
    # roll out to weights of 1e28 over 50,000 trials, where both solvers agree only to rounding times that.
    return {"reinforce-baseline": (ReinforceBaseline(), {"alpha": torch.tensor([0.03, 0.03]),
                                                         "beta": torch.tensor(0.5)}),
            "mlp (16, 16)": (MLPRule(2, hidden=(16, 16), seed=0), {}),
            "gru (16) + mlp (16, 16)": (GRURule(2, hidden=(16, 16), gru_hidden=16, seed=0, bptt_window=None), {})}


def _leaves(rule, params: dict) -> list[torch.Tensor]:
    network = rule_network(rule)
    return [p for p in params.values()] + (list(network.parameters()) if network is not None else [])


def _evaluate(rule, params, cohort, w0, solve) -> tuple[float, list[torch.Tensor], float, object]:
    leaves = _leaves(rule, params)
    for leaf in leaves:
        leaf.grad = None
    mask = cohort.observed & cohort.valid
    start = time.perf_counter()
    weights, info = solve(mask)
    nll = -(trial_loglik(weights, cohort.features, cohort.choice) * mask).sum()
    nll.backward()
    return float(nll.detach()), [leaf.grad.clone() for leaf in leaves], time.perf_counter() - start, info


def _sequential(rule, params, cohort, w0, mask) -> tuple[torch.Tensor, float]:
    weights = rollout_trajectory(rule, params, cohort.features, cohort.choice, cohort.reward, mask, w0)[0]
    return weights, float(weights.detach().abs().max())


def _parallel(rule, params, cohort, w0, mask, guess=None) -> tuple[torch.Tensor, int]:
    out = parallel_trajectory(rule, params, cohort.features, cohort.choice, cohort.reward, mask, w0, guess=guess)
    return out.weights, out.iterations


def part_solve(trial_counts: list[int]) -> pd.DataFrame:
    rows = []
    for n_trials in trial_counts:
        sim = simulate_cohort(Reinforce(), n_animals=12, n_trials=n_trials, params={"alpha": [0.03, 0.03]}, seed=0)
        cohort = sim.tensors(np.arange(12))
        w0 = torch.zeros(12, 2)
        for name, (rule, params) in _rules().items():
            if isinstance(rule, GRURule) and n_trials > 10_000:
                continue  # both solvers run nn.GRU's backprop over the whole sequence: > 10 min at 50,000
            params = {k: v.clone().requires_grad_(True) for k, v in params.items()}

            sequential = partial(_sequential, rule, params, cohort, w0)
            parallel = partial(_parallel, rule, params, cohort, w0)
            seq = min((_evaluate(rule, params, cohort, w0, sequential) for _ in range(3)), key=lambda e: e[2])
            cold = min((_evaluate(rule, params, cohort, w0, parallel) for _ in range(3)), key=lambda e: e[2])
            with torch.no_grad():  # the solution at parameters 0.1% away starts the warm solves
                saved = [leaf.detach().clone() for leaf in _leaves(rule, params)]
                for leaf in _leaves(rule, params):
                    leaf.mul_(1 + 1e-3 * torch.randn(leaf.shape, generator=torch.Generator().manual_seed(1)))
                near = parallel_trajectory(rule, params, cohort.features, cohort.choice, cohort.reward,
                                           cohort.observed & cohort.valid, w0).weights
                for leaf, value in zip(_leaves(rule, params), saved, strict=True):
                    leaf.copy_(value)
            warm = min((_evaluate(rule, params, cohort, w0, partial(parallel, guess=near)) for _ in range(3)),
                       key=lambda e: e[2])
            grad_diff = max(float((a - b).abs().max() / b.abs().max())
                            for e in (cold, warm) for a, b in zip(e[1], seq[1], strict=True))
            rows.append({"trials": n_trials, "animals": 12, "rule": name, "max_abs_weight": round(seq[3], 2),
                         "sequential_s": round(seq[2], 3),
                         "parallel_cold_s": round(cold[2], 3), "cold_linearizations": cold[3],
                         "parallel_warm_s": round(warm[2], 3), "warm_linearizations": warm[3],
                         "speedup_warm": round(seq[2] / warm[2], 1),
                         "loss_rel_diff": float(abs(warm[0] - seq[0]) / abs(seq[0])),
                         "grad_rel_diff": grad_diff})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def part_fit(lbfgs_steps: int, adam_epochs: int) -> pd.DataFrame:
    args = argparse.Namespace(animals=12, trials=10_000)
    _, _, train, _ = speed_cohort(args)
    configs = {f"L-BFGS, {lbfgs_steps} steps of 10 iterations": dict(epochs=lbfgs_steps, optimizer="lbfgs",
                                                                      lbfgs_iter=10),
               f"Adam, Liu et al. schedule (tbptt 100, one step per epoch), {adam_epochs} epochs":
                   dict(epochs=adam_epochs, lr=3e-3, tbptt=100, update="sequence")}
    rows = []
    for label, options in configs.items():
        fits = {solver: fit_rollout(train, MLPRule(2, hidden=(16, 16), seed=0), seed=0, progress=False,
                                    config=RolloutConfig(solver=solver, **options))
                for solver in ("sequential", "parallel")}
        seq, par = fits["sequential"], fits["parallel"]
        rows.append({"fit": label, "sequential_s": round(seq.elapsed_s, 1), "parallel_s": round(par.elapsed_s, 1),
                     "speedup": round(seq.elapsed_s / par.elapsed_s, 1),
                     "final_nll_per_trial": round(par.losses[-1], 6),
                     "max_loss_rel_diff": float(np.max(np.abs(np.subtract(par.losses, seq.losses))
                                                       / np.abs(seq.losses)))})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument("--lbfgs-steps", type=int, default=5)
    parser.add_argument("--adam-epochs", type=int, default=30)
    args = parser.parse_args()
    setup(log_level=None)
    solve = part_solve(args.trials)
    fits = part_fit(args.lbfgs_steps, args.adam_epochs)
    OUT.mkdir(exist_ok=True)
    solve.to_csv(OUT / "parallel_rollout_solve.csv", index=False)
    fits.to_csv(OUT / "parallel_rollout_fit.csv", index=False)
    text = "\n".join([
        "# parallel_rollout", "",
        f"Rollouts solved by Newton iterations over all trials vs the sequential loop. torch {torch.__version__}, "
        "1 thread. Run: `python bench/parallel_rollout.py`.", "",
        "## One loss-and-gradient evaluation (fastest of 3)", "", markdown(solve), "",
        "## Fits on 12 x 10,000 trials (MLP (16, 16)), each solver", "", markdown(fits), ""])
    (OUT / "parallel_rollout.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
