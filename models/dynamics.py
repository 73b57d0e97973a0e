"""Weight dynamics: priors on the trajectory and the learning-rule drift over whole padded sequences.

For animal ``a`` and trials ``t = 0 .. T_a - 1``::

    w_0 ~ N(init_mean, diag(sigma_init^2))
    w_{t+1} = w_t + o_t f_theta(w_t, x_t, y_t, r_t, c_t) + eps_t,   eps_t ~ N(0, diag(s_{t+1}^2))

with ``o_t`` = 1 where a choice was observed (a missing choice has no rule update), ``s_{t+1}`` =
``sigma_session`` when trial ``t + 1`` opens a session (when configured) and ``sigma`` otherwise. Padded
trials (``valid`` False) take part in nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, Params

__all__ = ["DynamicsConfig", "is_random_walk", "transition_sd", "rule_contexts", "drift_sequence",
           "linearized_drift"]


@dataclass(frozen=True)
class DynamicsConfig:
    """Priors of the weight dynamics.

    Parameters
    ----------
    sigma : float
        Standard deviation of the per-trial weight noise (the starting value when it is learned).
    sigma_session : float or None
        Noise standard deviation on the first trial of a session (psytrack's ``sigDay``); None uses ``sigma``.
    sigma_init : float
        Prior standard deviation of the first trial's weights (psytrack's ``sigInit``, 16 by default).
    init_mean : float
        Prior mean of the first trial's weights (the starting value when it is learned per animal).
    """

    sigma: float = 2.0 ** -4
    sigma_session: float | None = None
    sigma_init: float = 2.0 ** 4
    init_mean: float = 0.0

    def __post_init__(self) -> None:
        for name in ("sigma", "sigma_init"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.sigma_session is not None and not self.sigma_session > 0:
            raise ValueError(f"sigma_session must be positive or None, got {self.sigma_session}")


def is_random_walk(rule: LearningRule | None) -> bool:
    """Return True when the rule is absent or is a parameter-free rule named ``ZeroRule`` (pure random walk)."""
    return rule is None or (type(rule).__name__ == "ZeroRule" and not rule.parameters)


def transition_sd(sigma: Tensor, sigma_session: Tensor | None, session_start: Tensor) -> Tensor:
    """Return the noise sd of each transition ``t -> t + 1``, shape ``(animals, T - 1, K)``."""
    opens = session_start[:, 1:].unsqueeze(-1)
    if sigma_session is None:
        return sigma.expand(*opens.shape[:-1], sigma.shape[-1])
    return torch.where(opens, sigma_session, sigma)


def rule_contexts(rule: LearningRule, params: Params, data: CohortTensors) -> Tensor:
    """Return the rule's data-only contexts ``(animals, T, C)`` (empty, without a loop, when ``C = 0``)."""
    if not rule.context_size:
        return data.features.new_zeros(*data.features.shape[:-1], 0)
    return rule.contexts(params, data.features, data.choice, data.reward)


def drift_sequence(rule: LearningRule | None, params: Params, data: CohortTensors, weights: Tensor,
                   contexts: Tensor | None = None) -> Tensor:
    """Return the masked drift ``o_t f(w_t, ...)`` for every trial, shape ``(animals, T, K)``.

    Zero where the choice is missing or the trial is padding, and everywhere for a random walk.
    """
    if is_random_walk(rule):
        return torch.zeros_like(weights)
    if contexts is None:
        contexts = rule_contexts(rule, params, data)
    f = rule.drift(params, weights, data.features, data.choice, data.reward, contexts)
    active = (data.observed & data.valid).unsqueeze(-1)
    return torch.where(active, f, torch.zeros_like(f))


def linearized_drift(rule: LearningRule | None, params: Params, data: CohortTensors, weights: Tensor, *,
                     step: float = 1e-5, contexts: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Return the drift at ``weights`` and its Jacobian ``df/dw`` (central differences).

    ``contexts`` may pass precomputed :func:`rule_contexts` (they depend on the data and the rule only).

    Returns
    -------
    drift : Tensor, shape (animals, T, K)
    jacobian : Tensor, shape (animals, T, K, K)
        ``jacobian[..., i, j] = d f_i / d w_j``; differentiable in the rule parameters.
    """
    k = weights.shape[-1]
    if is_random_walk(rule):
        return torch.zeros_like(weights), weights.new_zeros(*weights.shape, k)
    if contexts is None:
        contexts = rule_contexts(rule, params, data)
    f = drift_sequence(rule, params, data, weights, contexts)
    eye = torch.eye(k, dtype=weights.dtype) * step
    columns = [(drift_sequence(rule, params, data, weights + eye[j], contexts)
                - drift_sequence(rule, params, data, weights - eye[j], contexts)) / (2 * step) for j in range(k)]
    return f, torch.stack(columns, -1)
