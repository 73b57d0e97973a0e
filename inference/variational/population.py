"""The population level of a hierarchical fit: each animal's rule parameters drawn from a population Normal.

On the unconstrained scale animal ``a`` has parameters ``u_a`` (a vector of the rule's ``P`` entries) and

    u_a ~ N(mu_{g(a)}, diag(sd^2)),   mu_g ~ N(centre, prior_scale^2),   log sd ~ N(log sd_median, sd_log_scale^2)

with ``g(a)`` the animal's group (one group unless group labels are given). The animals are conditionally
independent given ``(mu, sd)``, so the data term of animal ``a`` (its collapsed ELBO ``L_a(u_a)``) enters only
through its own ``P x P`` curvature block. With ``L_a`` expanded to second order at an expansion point ``m_a``
(gradient ``g_a``, negative Hessian ``H_a``), the animal's parameters integrate out in closed form
(:func:`log_marginal`, the Laplace approximation of ``p(data_a | mu, sd)``)::

    log Z_a = 1/2 b^T P^-1 b - 1/2 log det(P S) - 1/2 (m_a - mu)^T S^-1 (m_a - mu),
    P = H_a + S^-1,   b = g_a - S^-1 (m_a - mu),   S = diag(sd^2),

whose maximum in ``u_a`` is at ``m_a + P^-1 b`` with covariance ``P^-1``. The population ``(mu, log sd)`` is
fitted by empirical Bayes (the mode of this marginal times its weak priors); its Gaussian posterior comes from
the Hessian of the same function, and each animal's interval adds the spread its mode inherits from the
population's uncertainty (delta method through ``m_a + P^-1 b``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.functional import hessian, jacobian

__all__ = ["PopulationConfig", "PopulationPosterior", "log_marginal", "population_posterior", "project_psd"]


@dataclass(frozen=True)
class PopulationConfig:
    """Options of the population level of a hierarchical fit.

    Parameters
    ----------
    sd_median : float
        Median of the log-normal prior on each population sd (unconstrained scale of the parameter).
    sd_log_scale : float
        Sd of that prior on the log scale (weak: 1.5 spans sd 0.02 to 4 at 95%).
    init_sd : float
        Population sd of the first round, which fits the animals at a fixed sd before the sd is learned.
    max_rounds : int
        Most rounds of (curvature of every animal's data term, then a joint fit of the animals' parameters,
        noise and population at that curvature) after the first, which fits the animals at ``init_sd``.
    tol : float
        Converged when no population mean or log sd moved by more than this many of its posterior sds in a
        round.
    hessian_step : float
        Central-difference step of the per-animal curvature (unconstrained scale).
    """

    sd_median: float = 0.3
    sd_log_scale: float = 1.5
    init_sd: float = 0.5
    max_rounds: int = 3
    tol: float = 0.2
    hessian_step: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("sd_median", "sd_log_scale", "init_sd", "hessian_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_rounds < 0 or self.tol < 0:
            raise ValueError(f"max_rounds and tol must be >= 0, got {self.max_rounds} and {self.tol}")


def project_psd(curvature: Tensor, floor: float = 0.0) -> Tensor:
    """Return symmetric ``(A, P, P)`` blocks with eigenvalues raised to ``floor``.

    A data term that is flat or slightly convex along a direction (an animal whose choices do not inform a
    parameter; differencing noise) would make the Laplace integral improper; the prior then carries it.
    """
    sym = 0.5 * (curvature + curvature.mT)
    values, vectors = torch.linalg.eigh(sym)
    return vectors @ torch.diag_embed(values.clamp_min(floor)) @ vectors.mT


def log_marginal(mu: Tensor, log_sd: Tensor, group: Tensor, m: Tensor, g: Tensor, h: Tensor) -> Tensor:
    """Return ``sum_a log Z_a`` (module docstring) up to a constant.

    Parameters
    ----------
    mu : Tensor, shape (G, P)
        Population means per group.
    log_sd : Tensor, shape (P,)
        Log population sd.
    group : Tensor of int, shape (A,)
        Each animal's group.
    m, g : Tensor, shape (A, P)
        Expansion points of the data terms and their gradients there.
    h : Tensor, shape (A, P, P)
        Negative Hessians of the data terms (positive semi-definite).
    """
    sinv = torch.exp(-2 * log_sd)
    diff = m - mu[group]
    prec = h + torch.diag_embed(sinv.expand_as(m))
    b = g - sinv * diff
    sol = torch.linalg.solve(prec, b.unsqueeze(-1)).squeeze(-1)
    logdet = torch.linalg.slogdet(prec)[1]
    return (0.5 * (b * sol).sum(-1) - 0.5 * logdet - log_sd.sum() - 0.5 * (sinv * diff.pow(2)).sum(-1)).sum()


def log_hyperprior(mu: Tensor, log_sd: Tensor, centre: Tensor, scale: Tensor, config: PopulationConfig
                   ) -> Tensor:
    """Return the log density (up to a constant) of the weak priors on ``mu`` (G, P) and ``log_sd`` (P,)."""
    on_mu = -0.5 * ((mu - centre) / scale).pow(2).sum()
    on_sd = -0.5 * ((log_sd - math.log(config.sd_median)) / config.sd_log_scale).pow(2).sum()
    return on_mu + on_sd


@dataclass(frozen=True)
class PopulationPosterior:
    """Gaussian posterior of the population and of every animal's parameters (unconstrained scale).

    Parameters
    ----------
    mu : Tensor, shape (G, P)
    log_sd : Tensor, shape (P,)
    cov : Tensor, shape (G * P + P, P + ...)
        Covariance of ``(mu.flatten(), log_sd)``.
    animal_mean : Tensor, shape (A, P)
    animal_cov : Tensor, shape (A, P, P)
        Each animal's posterior covariance, including the population's uncertainty.
    unpooled_mean, unpooled_sd : Tensor, shape (A, P)
        The estimate from the animal's own data under the rule's declared prior alone (what an independent
        fit finds, by the same quadratic expansion of the data term) and its sd: the shrinkage is the step
        from it to ``animal_mean``.
    """

    mu: Tensor
    log_sd: Tensor
    cov: Tensor
    animal_mean: Tensor
    animal_cov: Tensor
    unpooled_mean: Tensor
    unpooled_sd: Tensor


def population_posterior(mu: Tensor, log_sd: Tensor, group: Tensor, m: Tensor, g: Tensor, h: Tensor,
                         centre: Tensor, scale: Tensor, config: PopulationConfig, *,
                         learn_sd: bool = True) -> PopulationPosterior:
    """Return the Laplace posterior of the population at ``(mu, log_sd)`` and the animals' posteriors.

    ``learn_sd`` False (independent fits: ``mu``, ``log_sd`` are the fixed prior) gives the population zero
    covariance.
    """
    mu, log_sd = mu.detach(), log_sd.detach()
    n_mu = mu.numel()

    def objective(flat: Tensor) -> Tensor:
        return (log_marginal(flat[:n_mu].reshape(mu.shape), flat[n_mu:], group, m, g, h)
                + log_hyperprior(flat[:n_mu].reshape(mu.shape), flat[n_mu:], centre, scale, config))

    def animal_mode(flat: Tensor) -> Tensor:
        sinv = torch.exp(-2 * flat[n_mu:])
        prec = h + torch.diag_embed(sinv.expand_as(m))
        b = g - sinv * (m - flat[:n_mu].reshape(mu.shape)[group])
        return m + torch.linalg.solve(prec, b.unsqueeze(-1)).squeeze(-1)

    flat = torch.cat([mu.reshape(-1), log_sd])
    sinv = torch.exp(-2 * log_sd)
    prec = h + torch.diag_embed(sinv.expand_as(m))
    animal_cov = torch.linalg.inv(prec)
    if learn_sd:
        hess = -hessian(objective, flat)
        values, vectors = torch.linalg.eigh(0.5 * (hess + hess.T))
        cov = vectors @ torch.diag(1 / values.clamp_min(1e-8)) @ vectors.T
        jac = jacobian(animal_mode, flat)  # (A, P, n)
        animal_cov = animal_cov + jac @ cov @ jac.mT
    else:
        cov = torch.zeros(flat.numel(), flat.numel(), dtype=flat.dtype)
    # the animal's own data under the rule's declared prior alone: the independent fit, by the same expansion
    prior_inv = scale.pow(-2)
    free_prec = h + torch.diag_embed(prior_inv.expand_as(m))
    free_cov = torch.linalg.inv(free_prec)
    free_b = g - prior_inv * (m - centre)
    unpooled = m + (free_cov @ free_b.unsqueeze(-1)).squeeze(-1)
    unpooled_sd = torch.diagonal(free_cov, dim1=-2, dim2=-1).sqrt()
    return PopulationPosterior(mu, log_sd, cov, animal_mode(flat).detach(), animal_cov.detach(), unpooled,
                               unpooled_sd)
