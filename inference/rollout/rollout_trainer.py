"""The mutable state of one rollout fit and its optimizer steps (:func:`~.rollout_fit.fit_rollout`).

A :class:`RolloutTrainer` owns a copy of the rule, its unconstrained parameters and network, the initial
weights and both optimizers: Adam on mini-batches of animals (Liu et al.'s truncated-backprop schedule, or
exact gradients) and full-batch L-BFGS on the exact rollout likelihood. Rollouts are solved in parallel over
trials (:mod:`learnrules.inference.rollout.parallel_rollout`) or stepped trial by trial (``config.solver``).
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from learnrules.inference.rollout.parallel_rollout import parallel_trajectory
from learnrules.inference.rollout.rollout import (
    constrained_params,
    estimate_initial_weights,
    rollout_trajectory,
    trial_loglik,
    unconstrained_params,
)
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import rule_network
from learnrules.models.rule import LearningRule, Params

if TYPE_CHECKING:
    from learnrules.inference.rollout.rollout_fit import RolloutConfig

__all__ = ["RolloutTrainer"]

_DIVERGED_LOSS = 1e10
"""Loss per trial an L-BFGS line search is told for a diverging rollout: far above any finite rollout's."""


class RolloutTrainer:
    """Mutable state of one fit: the rule copy, its tensors, the initial weights and the optimizer."""

    def __init__(self, cohort: CohortTensors, rule: LearningRule, params: Params | None,
                 init_weights: Tensor | None, config: RolloutConfig, holdout: Tensor | None = None) -> None:
        self.cohort, self.config = cohort, config
        self.updates = cohort.observed & cohort.valid  # trials whose choice moves the weights
        self.fitted = cohort.fitted if holdout is None else cohort.fitted & ~holdout  # trials in the loss
        self.rule = copy.deepcopy(rule)
        self.network = rule_network(self.rule)
        if self.network is not None:
            self.network.to(cohort.features.dtype).train()
        self.raw = unconstrained_params(self.rule, params, cohort.n_features)
        if init_weights is None:
            init_weights = (estimate_initial_weights(cohort, n_trials=config.n_init_trials)
                            if config.init_from == "data" else cohort.features.new_zeros(cohort.n_features))
        w0 = init_weights.detach().to(cohort.features.dtype)
        if config.init_weights == "shared":
            w0 = w0.reshape(-1, cohort.n_features).mean(0)
        else:
            w0 = w0.expand(cohort.n_animals, cohort.n_features)
        self.w0 = w0.clone().requires_grad_(config.init_weights != "fixed")
        rule_tensors = list(self.raw.values()) + (list(self.network.parameters()) if self.network is not None else [])
        init_tensors = [self.w0] if self.w0.requires_grad else []
        groups = [{"params": rule_tensors, "lr": config.lr}]
        groups += [{"params": init_tensors, "lr": config.init_lr}] if init_tensors else []
        self.adam = torch.optim.Adam(groups)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.adam, gamma=config.lr_decay)
        # one parameter group only: L-BFGS has no per-group options
        self.lbfgs = (torch.optim.LBFGS(rule_tensors + init_tensors, lr=1.0, max_iter=config.lbfgs_iter,
                                        history_size=100, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                                        tolerance_change=1e-14) if config.optimizer == "lbfgs" else None)
        self.n_updates = 0
        self.guess: Tensor | None = None  # last rollouts solved in parallel, to start the next ones
        self.diverged_trials = 0  # L-BFGS line-search trials whose rollout diverged

    def params(self) -> dict[str, Tensor]:
        """Return the rule's parameters on their constrained scale."""
        return constrained_params(self.rule, self.raw)

    def initial(self, index: Tensor | None = None) -> Tensor:
        """Return the initial weights of every animal (or those at ``index``), shape (animals, features)."""
        w0 = self.w0.expand(self.cohort.n_animals, self.cohort.n_features)
        return w0 if index is None else w0[index]

    def penalty(self) -> Tensor:
        """Return the weight-decay term of the per-trial loss (0 without a network or weight decay)."""
        if self.network is None or self.config.weight_decay == 0:
            return torch.zeros((), dtype=self.cohort.features.dtype)
        squares = sum(p.square().sum() for p in self.network.parameters())
        return 0.5 * self.config.weight_decay * squares

    def _step(self, epoch: int) -> None:
        penalty = self.penalty()
        if penalty.requires_grad:  # once per step: the penalty is per trial, like the scaled NLL
            penalty.backward()
        trainable = [p for g in self.adam.param_groups for p in g["params"]]
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, self.config.clip_norm)
        self.adam.step()
        self.adam.zero_grad()
        self.n_updates += 1

    def batch(self, index: Tensor, epoch: int) -> tuple[float, int]:
        """Train on the animals at ``index``; return the summed NLL and the number of fitted trials."""
        c, cfg = self.cohort, self.config
        x, y, r = c.features[index], c.choice[index], c.reward[index]
        updates, mask = self.updates[index], self.fitted[index]
        n_total = int(mask.sum())
        self.adam.zero_grad()
        if cfg.tbptt is None or (cfg.update == "sequence" and cfg.solver == "parallel"):  # one solve, one step
            nll = -(trial_loglik(self.trajectory(index, cfg.tbptt), x, y) * mask).sum()
            if not torch.isfinite(nll):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}: the rolled-out weights diverged (rule "
                                         "update too large); lower lr or init_scale, or set clip_norm")
            if n_total > 0:
                (nll / n_total).backward()
                self._step(epoch)
            return float(nll.detach()), n_total
        w, context, nll_sum = self.initial(index), None, 0.0
        for start in range(0, int(c.lengths[index].max()), cfg.tbptt):
            sl = slice(start, start + cfg.tbptt)
            n_chunk = int(mask[:, sl].sum())
            weights, w, context = rollout_trajectory(self.rule, self.params(), x[:, sl], y[:, sl], r[:, sl],
                                                     updates[:, sl], w, context)
            nll = -(trial_loglik(weights, x[:, sl], y[:, sl]) * mask[:, sl]).sum()
            if not torch.isfinite(nll):
                raise FloatingPointError(
                    f"non-finite loss at epoch {epoch}, trials {start}-{start + cfg.tbptt}: the rolled-out "
                    "weights diverged (rule update too large); lower lr, init_scale or tbptt, or set clip_norm")
            nll_sum += float(nll.detach())
            scale = n_chunk if cfg.update == "chunk" else n_total
            if scale > 0:
                (nll / scale).backward()
            if cfg.update == "chunk" and scale > 0:
                self._step(epoch)
            w, context = w.detach(), context.detach()
        if cfg.update == "sequence":
            self._step(epoch)
        return nll_sum, n_total

    def lbfgs_step(self, epoch: int) -> tuple[float, int]:
        """One full-batch L-BFGS step; the summed NLL before it and the number of fitted trials.

        A line-search trial whose rollout diverges (a non-finite loss) is reported to the line search as a
        loss of ``_DIVERGED_LOSS`` with a zero gradient, so that it backtracks towards the finite side; the
        point L-BFGS keeps is always one it evaluated as finite and better.
        """
        c, mask = self.cohort, self.fitted
        n_total, calls = int(mask.sum()), []

        def closure() -> Tensor:
            self.lbfgs.zero_grad()
            weights = self.trajectory()
            nll = -(trial_loglik(weights, c.features, c.choice) * mask).sum()
            calls.append(float(nll.detach()))
            if math.isfinite(calls[-1]):
                loss = nll / max(n_total, 1) + self.penalty()
                loss.backward()
                return loss
            if len(calls) == 1:  # the starting state itself
                raise FloatingPointError(f"non-finite loss at epoch {epoch}: the rolled-out weights diverged")
            self.diverged_trials += 1
            return torch.tensor(_DIVERGED_LOSS, dtype=nll.dtype)

        self.lbfgs.step(closure)
        self.n_updates += 1
        return calls[0], n_total

    def trajectory(self, index: Tensor | None = None, truncate: int | None = None) -> Tensor:
        """Weights of the whole rollout of the animals at ``index`` (default all), with gradients.

        The gradient is exact, or that of truncated backprop every ``truncate`` trials.
        """
        c = self.cohort
        x, y, r, mask = c.features, c.choice, c.reward, self.updates
        if index is not None:
            x, y, r, mask = x[index], y[index], r[index], mask[index]
        if self.config.solver == "sequential":
            return rollout_trajectory(self.rule, self.params(), x, y, r, mask, self.initial(index))[0]
        if self.guess is None:  # the initial weights held constant, as parallel_trajectory would start
            self.guess = self.initial().detach().unsqueeze(-2).expand(c.features.shape).clone()
        solved = parallel_trajectory(self.rule, self.params(), x, y, r, mask, self.initial(index),
                                     guess=self.guess if index is None else self.guess[index], truncate=truncate)
        if torch.isfinite(solved.weights).all():  # the next solve of these animals starts from here
            if index is None:
                self.guess = solved.weights.detach()
            else:
                self.guess[index] = solved.weights.detach()
        return solved.weights

    def snapshot(self) -> dict[str, Any]:
        """Return a copy of the fitted state (parameters, network, initial weights) for :meth:`restore`."""
        state = {k: v.detach().clone() for k, v in self.raw.items()}
        net = {k: v.clone() for k, v in self.network.state_dict().items()} if self.network is not None else {}
        return {"raw": state, "net": net, "w0": self.w0.detach().clone()}

    def restore(self, snap: dict[str, Any]) -> None:
        """Set the fitted state back to a :meth:`snapshot`."""
        with torch.no_grad():
            for k, v in snap["raw"].items():
                self.raw[k].copy_(v)
            self.w0.copy_(snap["w0"])
        if self.network is not None:
            self.network.load_state_dict(snap["net"])
