"""PSIS diagnostic of the Gaussian weight posterior (Yao, Vehtari, Simpson & Gelman 2018).

``q(w)`` is a Gaussian with banded precision fitted to a posterior that is not Gaussian (Bernoulli choices, a
nonlinear drift). Drawing trajectories from ``q`` and weighting them by ``p(y, w | theta) / q(w)`` (the exact
joint: the rule's drift itself, not its linearization) gives importance ratios whose tail, fitted by a
generalized Pareto distribution, has shape ``k``: below 0.5 the approximation is good, between 0.5 and 0.7 it
is usable with care, above 0.7 it is not to be trusted (Vehtari et al. 2024's thresholds). The ELBO the fit
maximizes is ``log p(y | theta)`` minus ``KL(q || p(w | y, theta))``; where ``q`` is poor that gap changes with
the hyperparameters and biases their mode and curvature, so a large ``k`` warns that the hyperparameters'
intervals may be too narrow or off-centre as well.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from arviz import psislw
from torch import Tensor

from learnrules.inference.variational.banded import BandedGaussianTrajectory
from learnrules.inference.variational.vi import Hyper, Posterior, _bernoulli_terms, _precision, linearize
from learnrules.models.dynamics import drift_sequence, transition_sd
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule

__all__ = ["KHAT_WARN", "log_joint", "weight_khat"]

KHAT_WARN = 0.7  # above it the importance ratios' tail is too heavy for the approximation to be trusted


def log_joint(rule: LearningRule | None, hyper: Hyper, data: CohortTensors, weights: Tensor) -> Tensor:
    """Return ``log p(y, w | theta)`` per animal for trajectories ``weights`` (animals, T, K), exact drift."""
    valid = data.valid
    z = (data.features * weights).sum(-1)
    choice = torch.where(data.choice > 0.5, z, -z)
    lik = torch.where(data.fitted, torch.nn.functional.logsigmoid(choice), torch.zeros_like(z)).sum(-1)
    drift = drift_sequence(rule, hyper.params, data, weights)
    sd = transition_sd(hyper.sigma, hyper.sigma_session, data.session_start)
    step = weights[:, 1:] - weights[:, :-1] - drift[:, :-1]
    real = valid[:, 1:].unsqueeze(-1)
    trans = -0.5 * (step / sd).pow(2) - sd.log() - 0.5 * math.log(2 * math.pi)
    dynamics = torch.where(real, trans, torch.zeros_like(trans)).sum((-1, -2))
    var0 = hyper.sigma_init.pow(2)
    init = (-0.5 * (weights[:, 0] - hyper.init_mean).pow(2) / var0 - 0.5 * var0.log()
            - 0.5 * math.log(2 * math.pi)).sum(-1)
    return lik + dynamics + init


@torch.no_grad()
def weight_khat(rule: LearningRule | None, hyper: Hyper, data: CohortTensors, post: Posterior, *,
                n_draws: int = 200, n_points: int = 32, seed: int = 0) -> np.ndarray:
    """Return the PSIS ``k`` of each animal's weight posterior ``q`` against the exact joint, shape (animals,).

    ``q``'s precision is rebuilt at its mean as the posterior update builds it; ``n_draws`` trajectories per
    animal are drawn from it with a generator seeded by ``seed``.
    """
    hyper = hyper.detach()
    lin = linearize(rule, hyper, data, post.mean)
    _, _, curvature = _bernoulli_terms(data, post.mean, post.cov, n_points)
    q = BandedGaussianTrajectory(post.mean, _precision(hyper, data, lin, curvature), mask=data.valid)
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(n_draws, *post.mean.shape, generator=generator, dtype=post.mean.dtype)
    draws = (post.mean + q.factor.sample_centered(eps)) * data.valid.unsqueeze(-1)
    n = data.n_animals
    many = data.select([a for _ in range(n_draws) for a in range(n)])
    flat = draws.reshape(n_draws * n, *post.mean.shape[1:])
    repeated = Hyper(hyper.sigma, hyper.sigma_session, hyper.sigma_init, hyper.init_mean.repeat(n_draws, 1),
                     hyper.params)
    ratios = log_joint(rule, repeated, many, flat).reshape(n_draws, n) - q.log_prob(draws)
    _, khat = psislw(ratios.T.numpy().copy())
    return np.atleast_1d(np.asarray(khat, dtype=float))
