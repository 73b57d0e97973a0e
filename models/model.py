"""The generative model as Pyro code, with stable site names.

Sites (``A`` animals, ``T`` padded trials, ``K`` features):

``rule.<name>``
    Each declared rule parameter, drawn from its declared prior (:meth:`Parameter.prior`).
``sigma``
    Weight-noise sd per feature, ``(K,)``; a wide log-normal around ``DynamicsConfig.sigma``.
``sigma_session``
    Noise sd on session starts, ``(K,)``; only when ``DynamicsConfig.sigma_session`` is set.
``w0``
    First-trial weights per animal, ``(A, K)``, ``N(init_mean, sigma_init^2)``, inside ``plate("animals")``.
``weights``
    Each animal's whole trajectory ``(T, K)`` as one vectorized site (:class:`WeightTrajectory`), whose first
    row equals ``w0``, inside ``plate("animals")``.
``choice``
    Observed choices ``(A, T)`` (``obs=``), Bernoulli with logits ``w_t . x_t``, masked to
    ``data.fitted`` (observed, not held out).

:func:`learnrules.inference.variational.fit` does not run SVI on this model (per-trial latents defeat first-order
optimizers; see DESIGN.md): it fits the same joint density with a banded Gaussian posterior. The model serves
as documentation, for prior predictive simulation, and as a density check in the tests.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints

from learnrules.models.dynamics import DynamicsConfig, drift_sequence, is_random_walk, rule_contexts, transition_sd
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, Params

__all__ = ["WeightTrajectory", "model"]


class WeightTrajectory(dist.TorchDistribution):
    """Distribution of each animal's ``(T, K)`` weight trajectory given ``w0``, the rule and the data.

    Parameters
    ----------
    rule : LearningRule or None
        The drift (None = random walk).
    params : mapping of str to Tensor
        Rule parameters.
    sigma : Tensor, shape (K,)
        Noise sd.
    sigma_session : Tensor of shape (K,), or None
        Noise sd into the first trial of a session.
    w0 : Tensor, shape (A, K)
        First-trial weights (the trajectory's first row).
    data : CohortTensors
        Observed features, choices and rewards (the drift reads them; padding is excluded).
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, rule: LearningRule | None, params: Params, sigma: Tensor, sigma_session: Tensor | None,
                 w0: Tensor, data: CohortTensors, *, validate_args: bool | None = None) -> None:
        self.rule, self.params, self.data, self.w0 = rule, params, data, w0
        self.sd = transition_sd(sigma, sigma_session, data.session_start)
        super().__init__(w0.shape[:-1], data.features.shape[-2:], validate_args=validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of the transitions ``w_t -> w_{t+1}`` over real trials."""
        drift = drift_sequence(self.rule, self.params, self.data, value)
        step = dist.Normal(value[..., :-1, :] + drift[..., :-1, :], self.sd).log_prob(value[..., 1:, :])
        real = self.data.valid[:, 1:].unsqueeze(-1)
        return torch.where(real, step, torch.zeros_like(step)).sum((-1, -2))

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """Simulate trajectories forward from ``w0`` (a Python loop over trials: for small prior checks)."""
        data, shape = self.data, (*sample_shape, *self.w0.shape)
        contexts = None if is_random_walk(self.rule) else rule_contexts(self.rule, self.params, data)
        w, rows = self.w0.expand(shape), []
        active = (data.observed & data.valid).unsqueeze(-1)
        for t in range(data.features.shape[1]):
            rows.append(w)
            if t + 1 == data.features.shape[1]:
                break
            drift = 0.0
            if contexts is not None:
                f = self.rule.drift(self.params, w, data.features[:, t], data.choice[:, t], data.reward[:, t],
                                    contexts[:, t])
                drift = torch.where(active[:, t], f, torch.zeros_like(f))
            w = w + drift + self.sd[:, t] * torch.randn(shape, dtype=w.dtype)
        return torch.stack(rows, -2) * data.valid.unsqueeze(-1)


def model(data: CohortTensors, *, rule: LearningRule | None = None, priors: DynamicsConfig | None = None,
          sigma_log_scale: float = 1.0) -> Tensor:
    """Pyro model of choices given features and rewards (sites documented in the module docstring).

    Parameters
    ----------
    data : CohortTensors
        The cohort; ``choice`` is observed on trials where ``observed`` is True.
    rule : LearningRule or None
        Learning rule shared by all animals (None = random walk).
    priors : DynamicsConfig, optional
        Noise and initial-weight priors.
    sigma_log_scale : float
        Sd of the log-normal priors of ``sigma`` and ``sigma_session``.

    Returns
    -------
    Tensor
        The sampled or observed weight trajectories ``(A, T, K)``.
    """
    priors = priors or DynamicsConfig()
    k, n = data.n_features, data.n_animals
    params = {name: pyro.sample(f"rule.{name}", spec.prior(k))
              for name, spec in ({} if rule is None else rule.parameters).items()}
    ones = data.features.new_ones(k)
    sigma = pyro.sample("sigma", dist.LogNormal(math.log(priors.sigma) * ones, sigma_log_scale).to_event(1))
    sigma_session = None
    if priors.sigma_session is not None:
        sigma_session = pyro.sample("sigma_session", dist.LogNormal(math.log(priors.sigma_session) * ones,
                                                                    sigma_log_scale).to_event(1))
    with pyro.plate("animals", n):
        w0 = pyro.sample("w0", dist.Normal(priors.init_mean * ones, priors.sigma_init * ones).to_event(1))
        weights = pyro.sample("weights", WeightTrajectory(rule, params, sigma, sigma_session, w0, data))
        logits = (weights * data.features).sum(-1)
        live = data.fitted  # held-out (cross-validation) choices move the weights but are not observed here
        pyro.sample("choice", dist.Bernoulli(logits=logits).mask(live).to_event(1), obs=data.choice)
    return weights
