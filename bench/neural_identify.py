"""Is the update identified from choices? What an update error costs in log-likelihood, and what an MLP finds.

The Liu et al. (2025) setting of ``neural_recovery.py --known-init``: 100 noise-free REINFORCE animals x 2,000
trials, initial weights known, deterministic rollout, 100 more animals held out. Two parts, both fitted on
the exact (untruncated) rollout likelihood of the training animals:

- ``price``: REINFORCE+baseline fitted with its baseline free, then fixed at 0.25 and 0.5 (REINFORCE has
  none: its update is zero after an omission). The log-likelihood below the oracle (true rule, true
  parameters) against the relative RMSE of the update on the visited states: how many nats the data charge
  for a given update error when the rule has three parameters.
- ``mlp``: an MLP rule (default hidden sizes (32, 32)) fitted by full-batch L-BFGS under a time budget: the
  same two numbers, the error of the expected update (over the choice) and the share of the squared error on
  unrewarded trials, per network initialization.

Every row also gives the held-out animals' log-likelihood per trial (true initial weights) minus the true
rule's: a fit above the oracle on its training animals but below it on new ones has fitted noise.

Usage: python bench/neural_identify.py [--budget 900] [--hidden 32,32 8,8] [--seeds 0 1 2] [--activation tanh]
[--weight-decay 1e-5] [--name NAME]
Writes results/<name>.md and .csv.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from neural_recovery import update_recovery

from learnrules.inference.rollout.rollout import predict_heldout, rollout_loglik
from learnrules.inference.rollout.rollout_fit import RolloutConfig, fit_rollout
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import MLPRule, rule_network
from learnrules.models.rule import LearningRule
from learnrules.other_rules import Reinforce, ReinforceBaseline
from learnrules.synthetic import SimulatedCohort, simulate_cohort

from report import setup

RESULTS = Path(__file__).parent / "results"
TRAIN, TEST = np.arange(100), np.arange(100, 200)


@dataclass(frozen=True)
class FixedBaseline(ReinforceBaseline):
    """REINFORCE+baseline with the baseline held at ``beta``: only the rates are fitted."""

    beta: float = 0.5
    parameters: ClassVar = MappingProxyType({"alpha": ReinforceBaseline.parameters["alpha"]})

    def drift(self, params, w, x, y, r, context):  # noqa: ANN001, ANN201
        beta = torch.tensor(self.beta, dtype=w.dtype)
        return super().drift({**params, "beta": beta}, w, x, y, r, context)


@dataclass(frozen=True)
class Setting:
    """The simulated cohort, its training and held-out animals (known initial weights) and the oracle."""

    sim: SimulatedCohort
    train: CohortTensors
    test: CohortTensors
    w0: torch.Tensor
    test_w0: torch.Tensor
    oracle: float  # total train log-likelihood of the true rule
    test_oracle: float  # held-out log-likelihood per trial of the true rule

    @classmethod
    def build(cls) -> Setting:
        sim = simulate_cohort(Reinforce(), n_animals=200, n_trials=2000, seed=0)  # the neural_recovery cohort
        train, test = sim.tensors(TRAIN), sim.tensors(TEST)
        w0, test_w0 = torch.as_tensor(sim.weights[TRAIN, 0]), torch.as_tensor(sim.weights[TEST, 0])
        truth = {k: torch.as_tensor(v) for k, v in sim.params.items()}
        return cls(sim, train, test, w0, test_w0, float(rollout_loglik(train, Reinforce(), truth, w0).sum()),
                   predict_heldout(test, Reinforce(), truth, init_weights=test_w0).loglik_per_trial)

    def row(self, label: str, rule: LearningRule, params: dict, loglik: float, **extra: object) -> dict:
        """Train log-likelihood below the oracle, held-out gap per trial and the pooled update recovery."""
        pooled = update_recovery(self.sim, rule, self.train, TRAIN, params)[-1]
        heldout = predict_heldout(self.test, rule, params, init_weights=self.test_w0).loglik_per_trial
        return {"fit": label, "loglik_below_oracle": self.oracle - loglik,
                "heldout_gap_per_trial": heldout - self.test_oracle, "rel_rmse": pooled["rel_rmse"],
                "rel_rmse_expected": pooled["rel_rmse_expected"],
                "rel_rmse_field": pooled["rel_rmse_field"], "unrewarded_share": pooled["unrewarded_share"],
                **extra}


def part_price(setting: Setting) -> list[dict]:
    """REINFORCE+baseline by full rollout, baseline free and fixed."""
    train = setting.train
    config = RolloutConfig(epochs=300, lr=0.05, tbptt=train.features.shape[1], init_weights="fixed",
                           update="sequence", tol=1e-9, log_every=100)
    rows = []
    for beta in (None, 0.25, 0.5):
        rule = ReinforceBaseline() if beta is None else FixedBaseline(beta=beta)
        tick = time.perf_counter()
        res = fit_rollout(train, rule, config=config, init_weights=setting.w0, seed=0, progress=False)
        params = {k: v.detach() for k, v in res.params.items()}
        full = params if beta is None else {**params, "beta": torch.tensor(beta)}
        fitted = {k: np.round(v.numpy(), 4).tolist() for k, v in full.items()}
        rows.append(setting.row("REINFORCE+baseline, " + ("baseline free" if beta is None else
                                                           f"baseline fixed {beta}"),
                                ReinforceBaseline(), full, float(res.train_loglik.sum()), fitted=str(fitted),
                                wall_s=round(time.perf_counter() - tick, 1)))
    return rows


def part_mlp(setting: Setting, budget: float, hidden: tuple[int, ...], seed: int, activation: str,
             weight_decay: float) -> list[dict]:
    """MLP rule by full-batch L-BFGS (strong Wolfe) on the exact rollout likelihood, under a time budget."""
    config = RolloutConfig(epochs=100_000, optimizer="lbfgs", lbfgs_iter=20, init_weights="fixed", tol=0.0,
                           time_budget_s=budget, log_every=1, weight_decay=weight_decay)
    mlp = MLPRule(setting.train.n_features, hidden=hidden, activation=activation, seed=seed)
    res = fit_rollout(setting.train, mlp, config=config, init_weights=setting.w0, progress=False)
    n_params = sum(p.numel() for p in rule_network(res.rule).parameters())
    label = (f"MLP {hidden} {activation} seed {seed}, full-batch L-BFGS"
             + (f", weight decay {weight_decay:g}" if weight_decay else ""))
    return [setting.row(label, res.rule, {}, float(res.train_loglik.sum()),
                        fitted=f"{n_params} network parameters, {res.n_steps} L-BFGS steps (20 iterations each); "
                               f"{res.stop_reason}",
                        wall_s=round(res.elapsed_s, 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=900.0, help="wall time of each MLP fit, s")
    parser.add_argument("--hidden", nargs="+", default=["32,32"], help="MLP hidden sizes, one fit each")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="network initializations, one fit each")
    parser.add_argument("--activation", default="relu", choices=("relu", "tanh", "silu"), help="of the MLPs")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty on the MLPs, per trial")
    parser.add_argument("--name", default="neural_identify", help="results/<name>.md and .csv")
    args = parser.parse_args()
    setup()
    setting = Setting.build()
    rows = part_price(setting)
    for hidden in args.hidden:
        for seed in args.seeds:
            rows += part_mlp(setting, args.budget, tuple(int(h) for h in hidden.split(",")), seed, args.activation,
                             args.weight_decay)
    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / f"{args.name}.csv", index=False)
    header = ["fit", "loglik_below_oracle", "heldout_gap_per_trial", "rel_rmse", "rel_rmse_expected",
              "rel_rmse_field", "unrewarded_share", "fitted", "wall_s"]
    lines = [f"# {args.name}", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, 1 thread. "
             f"100 noise-free REINFORCE animals x 2,000 trials (alpha {setting.sim.params['alpha'].tolist()}), "
             f"initial weights known; oracle log-likelihood {setting.oracle:.2f} nats over "
             f"{int(setting.train.observed.sum())} trials. Log-likelihood in nats (total over the training "
             "animals); held-out gap: log-likelihood per trial of 100 new animals (true initial weights) minus "
             f"the true rule's ({setting.test_oracle:.5f}); relative RMSE of the update on the visited states, "
             "pooled over weights: of the per-trial update (rel_rmse), of the update averaged over the choice "
             "(rel_rmse_expected) and over the task's stimuli too, the drift field (rel_rmse_field).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join((f"{r[h]:+.5f}" if h == "heldout_gap_per_trial" else f"{r[h]:.3f}")
                                       if isinstance(r[h], float) else str(r[h]) for h in header)
                     + " |")
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
