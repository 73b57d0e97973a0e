"""Deterministic rollout (sigma = 0): weight trajectories, their log-likelihood and held-out prediction.

The weights follow the rule exactly, ``w_{t+1} = w_t + drift(w_t, x_t, y_t, r_t, c_t)`` (no update on
trials without a choice), from given initial weights: the model of Liu, Geadah & Pillow (2025), fitted by
:func:`learnrules.inference.rollout.rollout_fit.fit_rollout`.

Held-out animals (:func:`predict_heldout`) are predicted with the fitted shared rule from initial weights
that are either given (e.g. the mean of the training animals' initial weights) or fitted, with the rule
frozen, on the animal's first ``fit_trials`` trials, which are then left out of the score.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import biject_to

from learnrules.inference.rollout.parallel_rollout import parallel_trajectory
from learnrules.inference.rollout.sequential_rollout import rollout_trajectory
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, Params

logger = logging.getLogger(__name__)

_IMPOSSIBLE_CHOICE = 1e-8
"""A scored choice a model gives less probability than this signals diverged weights."""

__all__ = [
    "rollout_trajectory",
    "trial_loglik",
    "rollout_weights",
    "rollout_loglik",
    "estimate_initial_weights",
    "constrained_params",
    "unconstrained_params",
    "HeldoutPrediction",
    "predict_heldout",
]


def trial_loglik(weights: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bernoulli log-likelihood of each choice under ``p(y=1) = sigmoid(w . x)``, shape ``(A, L)``."""
    logits = (weights * x).sum(-1)
    return -F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none")


def rollout_weights(cohort: CohortTensors, rule: LearningRule, params: Params, init_weights: Tensor, *,
                    solver: Literal["parallel", "sequential"] = "parallel", chunk: int = 500,
                    max_solve: int = 200_000) -> Tensor:
    """Weights of a deterministic rollout on every trial, shape ``(animals, T, K)``, without gradients.

    ``init_weights`` is ``(animals, K)`` or ``(K,)`` (shared). ``solver="parallel"`` solves the rollouts of
    up to ``max_solve`` animal-trials at once
    (:func:`~learnrules.inference.rollout.parallel_rollout.parallel_trajectory`,
    the same values to rounding, several times faster); "sequential" steps through the trials in chunks of
    ``chunk``.
    """
    if solver not in ("parallel", "sequential"):
        raise ValueError(f"solver must be 'parallel' or 'sequential', got {solver!r}")
    mask = cohort.observed & cohort.valid
    x, y, r = cohort.features, cohort.choice, cohort.reward
    w = init_weights.to(x.dtype).expand(cohort.n_animals, cohort.n_features)
    with torch.no_grad():
        if solver == "parallel":
            per_solve = max(1, max_solve // max(x.shape[1], 1))
            parts = [parallel_trajectory(rule, params, x[sl], y[sl], r[sl], mask[sl], w[sl]).weights
                     for sl in (slice(a, a + per_solve) for a in range(0, cohort.n_animals, per_solve))]
            return torch.cat(parts, dim=0) if parts else x.new_zeros(x.shape)
        context, parts = None, []
        for sl in (slice(t, t + chunk) for t in range(0, x.shape[1], chunk)):
            weights, w, context = rollout_trajectory(rule, params, x[:, sl], y[:, sl], r[:, sl], mask[:, sl], w,
                                                     context)
            parts.append(weights)
        return torch.cat(parts, dim=1) if parts else x.new_zeros(x.shape)


def rollout_loglik(cohort: CohortTensors, rule: LearningRule, params: Params, init_weights: Tensor, *,
                   solver: Literal["parallel", "sequential"] = "parallel", chunk: int = 500,
                   max_solve: int = 200_000) -> Tensor:
    """Per-trial log-likelihood of a deterministic rollout, shape ``(animals, T)``; 0 on unobserved trials.

    Arguments as :func:`rollout_weights`.
    """
    weights = rollout_weights(cohort, rule, params, init_weights, solver=solver, chunk=chunk, max_solve=max_solve)
    ll = trial_loglik(weights, cohort.features, cohort.choice)
    return torch.where(cohort.observed & cohort.valid, ll, torch.zeros_like(ll))


def estimate_initial_weights(cohort: CohortTensors, *, n_trials: int = 100, l2: float = 1.0,
                             iterations: int = 25) -> Tensor:
    """Estimate initial weights by a ridge logistic regression on each animal's first ``n_trials`` trials.

    Only fitted choices count (not held-out ones).

    The psychometric-curve start of Liu et al.'s code, made a proper MAP estimate (prior precision ``l2``
    around 0); Newton's method vectorized over animals. Returns ``(animals, K)``.
    """
    mask = cohort.fitted[:, :n_trials].to(cohort.features.dtype)
    x, y = cohort.features[:, :n_trials], cohort.choice[:, :n_trials]
    k = cohort.n_features
    w = x.new_zeros(cohort.n_animals, k)
    eye = torch.eye(k, dtype=x.dtype)
    for _ in range(iterations):
        p = torch.sigmoid((x * w.unsqueeze(1)).sum(-1))
        grad = ((mask * (y - p)).unsqueeze(-1) * x).sum(1) - l2 * w
        hess = torch.einsum("at,atk,atj->akj", mask * p * (1 - p), x, x) + l2 * eye
        step = torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
        w = w + step
        if step.abs().max() < 1e-10:
            break
    return w


def constrained_params(rule: LearningRule, unconstrained: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map unconstrained tensors to the rule's parameter constraints."""
    return {name: biject_to(rule.parameters[name].constraint)(u) for name, u in unconstrained.items()}


def unconstrained_params(rule: LearningRule, params: Params | None, n_features: int) -> dict[str, Tensor]:
    """Unconstrained leaf tensors (requiring grad) for the rule's declared parameters."""
    start = dict(rule.default_params(n_features))
    start.update({k: torch.as_tensor(v, dtype=torch.get_default_dtype()) for k, v in (params or {}).items()})
    out = {}
    for name, spec in rule.parameters.items():
        value = start[name].detach().expand(spec.shape(n_features))
        out[name] = biject_to(spec.constraint).inv(value).clone().requires_grad_(True)
    return out


@dataclass(frozen=True)
class HeldoutPrediction:
    """Held-out-animal prediction under a fixed rule.

    Parameters
    ----------
    loglik : Tensor, shape (animals, T)
        Per-trial log-likelihood, 0 where not scored.
    scored : Tensor of bool, shape (animals, T)
        Trials in the score (observed, not padding, not used to fit the initial weights).
    init_weights : Tensor, shape (animals, K)
        Initial weights used.
    loglik_per_trial : float
        Mean log-likelihood over scored trials, nats.
    accuracy : float
        Fraction of scored trials whose choice is the more probable one.
    """

    loglik: Tensor
    scored: Tensor
    init_weights: Tensor
    loglik_per_trial: float
    accuracy: float


def _fit_init_only(cohort: CohortTensors, rule: LearningRule, params: Params, w0: Tensor, *, n_trials: int,
                   steps: int, lr: float) -> Tensor:
    """Fit initial weights on the first ``n_trials`` trials with the rule frozen (Adam)."""
    sub = CohortTensors(*(getattr(cohort, f)[:, :n_trials] for f in
                          ("features", "choice", "reward", "observed", "valid", "session_start")),
                        cohort.lengths.clamp(max=n_trials), cohort.feature_names, cohort.subjects)
    mask = sub.observed & sub.valid
    w0 = w0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w0], lr=lr)
    for _ in range(steps):
        weights, _, _ = rollout_trajectory(rule, params, sub.features, sub.choice, sub.reward, mask, w0)
        ll = trial_loglik(weights, sub.features, sub.choice)
        loss = -(ll * mask).sum() / mask.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w0.detach()


def warn_impossible_choices(loglik: np.ndarray, scored: np.ndarray, *, model: str) -> None:
    """Log a warning when a scored choice has probability < 1e-8 under ``model``: its weights diverged there.

    E.g. an unbounded (relu) update extrapolating to weights no training animal reached; such trials dominate
    a log-likelihood score.
    """
    impossible = (loglik < math.log(_IMPOSSIBLE_CHOICE)) & scored
    if impossible.any():
        logger.warning("%d scored choices of %d animals have probability < %g under %s: its weights diverge "
                       "there, and these trials dominate the score", int(impossible.sum()),
                       int(impossible.any(1).sum()), _IMPOSSIBLE_CHOICE, model)


def predict_heldout(cohort: CohortTensors, rule: LearningRule, params: Params | None = None, *,
                    init_weights: Tensor | None = None, fit_trials: int = 0, steps: int = 100,
                    lr: float = 0.05, warn_diverged: bool = True,
                    solver: Literal["parallel", "sequential"] = "parallel") -> HeldoutPrediction:
    """Predict held-out animals with a fixed (fitted) rule.

    Parameters
    ----------
    cohort : CohortTensors
        The held-out animals.
    rule, params
        The fitted shared rule (``params`` empty for neural rules; the rule is not trained here).
    init_weights : Tensor, shape (K,) or (animals, K), optional
        Initial weights, e.g. the mean of the training animals' (``result.init_weights.mean(0)``).
        Default: a ridge logistic regression on the first ``max(fit_trials, 100)`` trials.
    fit_trials : int
        When > 0, refine the initial weights by maximizing the rollout likelihood of each animal's first
        ``fit_trials`` trials (rule frozen, ``steps`` Adam steps at ``lr``), and score only later trials.
    warn_diverged : bool
        Log a warning when some scored choice has probability < 1e-8: the rolled-out weights diverged (e.g.
        an unbounded update extrapolating to weights no training animal reached), and those trials dominate
        the score.
    solver : {"parallel", "sequential"}
        How the rollout is solved (:func:`rollout_loglik`).
    """
    params = dict(params or {})
    if init_weights is None:
        init_weights = estimate_initial_weights(cohort, n_trials=max(fit_trials, 100))
    w0 = init_weights.to(cohort.features.dtype).expand(cohort.n_animals, cohort.n_features).clone()
    scored = cohort.observed & cohort.valid
    if fit_trials > 0:
        w0 = _fit_init_only(cohort, rule, params, w0, n_trials=fit_trials, steps=steps, lr=lr)
        scored = scored & (torch.arange(cohort.features.shape[1]) >= fit_trials)
    ll = rollout_loglik(cohort, rule, params, w0, solver=solver)
    ll = torch.where(scored, ll, torch.zeros_like(ll))
    if warn_diverged:
        warn_impossible_choices(ll.numpy(), scored.numpy(), model="the rolled-out rule")
    n = scored.sum().clamp(min=1)
    # A choice is predicted correctly when its probability exceeds 1/2, i.e. log-likelihood > log(1/2).
    correct = (ll > -torch.log(torch.tensor(2.0, dtype=ll.dtype))) & scored
    return HeldoutPrediction(ll, scored, w0, float(ll.sum() / n), float(correct.sum() / n))
