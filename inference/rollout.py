"""Deterministic rollout (sigma = 0): weight trajectories, their log-likelihood and held-out prediction.

The weights follow the rule exactly, ``w_{t+1} = w_t + drift(w_t, x_t, y_t, r_t, c_t)`` (no update on
trials without a choice), from given initial weights: the model of Liu, Geadah & Pillow (2025), fitted by
:func:`learnrules.inference.rollout_fit.fit_rollout`.

Held-out animals (:func:`predict_heldout`) are predicted with the fitted shared rule from initial weights
that are either given (e.g. the mean of the training animals' initial weights) or fitted, with the rule
frozen, on the animal's first ``fit_trials`` trials, which are then left out of the score.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import biject_to

from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, Params

logger = logging.getLogger(__name__)

_IMPOSSIBLE_CHOICE = 1e-8
"""A scored choice a model gives less probability than this signals diverged weights."""

__all__ = [
    "rollout_trajectory",
    "trial_loglik",
    "rollout_loglik",
    "estimate_initial_weights",
    "constrained_params",
    "unconstrained_params",
    "HeldoutPrediction",
    "predict_heldout",
]


def _chunk_contexts(rule: LearningRule, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor
                    ) -> Tensor:
    """Contexts after each trial of a chunk ``(A, L, ...)``, starting from the carried ``context``."""
    if rule.markov and rule.context_size == 0:
        return context.unsqueeze(-2).expand(*x.shape[:-1], 0)
    fast = getattr(rule, "contexts_from", None)
    if fast is not None:
        return fast(params, context, x, y, r)
    out = []
    for t in range(x.shape[-2]):
        context = rule.next_context(params, context, x[..., t, :], y[..., t], r[..., t])
        out.append(context)
    return torch.stack(out, dim=-2)


def rollout_trajectory(rule: LearningRule, params: Params, x: Tensor, y: Tensor, r: Tensor, mask: Tensor,
                       w0: Tensor, context0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Roll the weights forward over a chunk of trials.

    Parameters
    ----------
    rule, params
        The rule and its parameters.
    x : Tensor, shape (A, L, K)
        Features. ``y``, ``r``: choices and rewards, shape ``(A, L)``.
    mask : Tensor of bool, shape (A, L)
        Trials that update the weights (observed and not padding).
    w0 : Tensor, shape (A, K)
        Weights on the chunk's first trial.
    context0 : Tensor, shape (A, C), optional
        Context before the chunk (default: the rule's initial context).

    Returns
    -------
    weights : Tensor, shape (A, L, K)
        Weights used on each trial of the chunk.
    w_next : Tensor, shape (A, K)
        Weights after the chunk's last trial.
    context : Tensor, shape (A, C)
        Context after the chunk's last trial.
    """
    if context0 is None:
        context0 = rule.init_context(params, x.shape[:-2], x.shape[-1]).to(x.dtype)
    contexts = _chunk_contexts(rule, params, context0, x, y, r)
    gate = mask.to(x.dtype).unsqueeze(-1)
    w, out = w0, []
    for t in range(x.shape[-2]):
        out.append(w)
        w = w + gate[:, t] * rule.drift(params, w, x[:, t], y[:, t], r[:, t], contexts[:, t])
    context = contexts[:, -1] if x.shape[-2] > 0 else context0
    return torch.stack(out, dim=1), w, context


def trial_loglik(weights: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bernoulli log-likelihood of each choice under ``p(y=1) = sigmoid(w . x)``, shape ``(A, L)``."""
    logits = (weights * x).sum(-1)
    return -F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none")


def rollout_loglik(cohort: CohortTensors, rule: LearningRule, params: Params, init_weights: Tensor, *,
                   chunk: int = 500) -> Tensor:
    """Per-trial log-likelihood of a deterministic rollout, shape ``(animals, T)``; 0 on unobserved trials.

    ``init_weights`` is ``(animals, K)`` or ``(K,)`` (shared).
    """
    mask = cohort.observed & cohort.valid
    w = init_weights.to(cohort.features.dtype).expand(cohort.n_animals, cohort.n_features)
    context, out = None, []
    with torch.no_grad():
        for start in range(0, cohort.features.shape[1], chunk):
            sl = slice(start, start + chunk)
            x, y = cohort.features[:, sl], cohort.choice[:, sl]
            weights, w, context = rollout_trajectory(rule, params, x, y, cohort.reward[:, sl], mask[:, sl], w,
                                                     context)
            out.append(trial_loglik(weights, x, y))
    ll = torch.cat(out, dim=1) if out else cohort.choice.new_zeros(cohort.choice.shape)
    return torch.where(mask, ll, torch.zeros_like(ll))


def estimate_initial_weights(cohort: CohortTensors, *, n_trials: int = 100, l2: float = 1.0,
                             iterations: int = 25) -> Tensor:
    """Estimate initial weights by a ridge logistic regression on each animal's first ``n_trials`` trials.

    The psychometric-curve start of Liu et al.'s code, made a proper MAP estimate (prior precision ``l2``
    around 0); Newton's method vectorized over animals. Returns ``(animals, K)``.
    """
    mask = (cohort.observed & cohort.valid)[:, :n_trials].to(cohort.features.dtype)
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
                    lr: float = 0.05, warn_diverged: bool = True) -> HeldoutPrediction:
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
    """
    params = dict(params or {})
    if init_weights is None:
        init_weights = estimate_initial_weights(cohort, n_trials=max(fit_trials, 100))
    w0 = init_weights.to(cohort.features.dtype).expand(cohort.n_animals, cohort.n_features).clone()
    scored = cohort.observed & cohort.valid
    if fit_trials > 0:
        w0 = _fit_init_only(cohort, rule, params, w0, n_trials=fit_trials, steps=steps, lr=lr)
        scored = scored & (torch.arange(cohort.features.shape[1]) >= fit_trials)
    ll = rollout_loglik(cohort, rule, params, w0)
    ll = torch.where(scored, ll, torch.zeros_like(ll))
    if warn_diverged:
        warn_impossible_choices(ll.numpy(), scored.numpy(), model="the rolled-out rule")
    n = scored.sum().clamp(min=1)
    # A choice is predicted correctly when its probability exceeds 1/2, i.e. log-likelihood > log(1/2).
    correct = (ll > -torch.log(torch.tensor(2.0, dtype=ll.dtype))) & scored
    return HeldoutPrediction(ll, scored, w0, float(ll.sum() / n), float(correct.sum() / n))
