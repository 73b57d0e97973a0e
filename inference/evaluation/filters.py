"""Filters behind :mod:`~learnrules.inference.evaluation.evaluate`: a bootstrap particle and a Gaussian (ADF) filter.

Particles are laid out ``(animals, replicates, particles, K)``: every replicate is an independent filter, so
the spread of their totals measures the Monte Carlo error. The loop runs over trials only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, Params

__all__ = ["FilterInputs", "run_gaussian_filter", "run_particle_filter", "systematic_resample"]


@dataclass(frozen=True)
class FilterInputs:
    """Everything a filter needs, as tensors of the cohort's dtype.

    Parameters
    ----------
    cohort : CohortTensors
        Padded data.
    rule : LearningRule
        Drift of the weights.
    params : Params
        Rule parameters.
    sigma : Tensor, shape (K,)
        Per-trial noise sd.
    sigma_session : Tensor, shape (K,), optional
        Noise sd into a session's first trial (None: ``sigma``).
    init_mean, init_sd : Tensor, shape (animals, K)
        Prior of the initial weights.
    """

    cohort: CohortTensors
    rule: LearningRule
    params: Params
    sigma: Tensor
    sigma_session: Tensor | None
    init_mean: Tensor
    init_sd: Tensor


def systematic_resample(log_weights: Tensor, generator: torch.Generator) -> Tensor:
    """Return systematic-resampling ancestor indices ``(B, P)`` for normalized log weights ``(B, P)``."""
    b, p = log_weights.shape
    cdf = torch.cumsum(log_weights.exp(), dim=-1)
    cdf = cdf / cdf[:, -1:]  # guard against rounding so the last bin closes at 1
    u = (torch.rand(b, 1, generator=generator, dtype=cdf.dtype) + torch.arange(p, dtype=cdf.dtype)) / p
    return torch.searchsorted(cdf.contiguous(), u.contiguous()).clamp_(max=p - 1)


def _gather(tensor: Tensor, index: Tensor) -> Tensor:
    """Reorder particles ``(A, R, P, D)`` by ancestor indices ``(A, R, P)``."""
    return tensor.gather(2, index.unsqueeze(-1).expand_as(tensor))


def _resample(log_w: Tensor, tensors: list[Tensor], need: Tensor, generator: torch.Generator
              ) -> tuple[Tensor, list[Tensor]]:
    """Resample the filters (A, R) flagged in ``need``; return new log weights and reordered tensors."""
    a, r, p = log_w.shape
    idx = systematic_resample(log_w.reshape(a * r, p), generator).reshape(a, r, p)
    idx = torch.where(need.unsqueeze(-1), idx, torch.arange(p).expand(a, r, p))
    log_w = torch.where(need.unsqueeze(-1), torch.full_like(log_w, -math.log(p)), log_w)
    return log_w, [_gather(t, idx) for t in tensors]


def _noise_sd(inputs: FilterInputs, t: int) -> Tensor:
    """Noise sd of the transition into trial ``t``, shape (animals, K)."""
    opens = inputs.cohort.session_start[:, t].unsqueeze(-1)
    sigma = inputs.sigma.expand(opens.shape[0], -1)
    if inputs.sigma_session is None:
        return sigma
    return torch.where(opens, inputs.sigma_session.expand_as(sigma), sigma)


def _drift(inputs: FilterInputs, w: Tensor, state: Tensor, contexts: Tensor | None, t: int
           ) -> tuple[Tensor, Tensor]:
    """Drift of every particle after trial ``t`` and the rule's new latent state."""
    c = inputs.cohort
    shape = w.shape[:-1]
    x = c.features[:, t, None, None, :].expand_as(w)
    y, r = c.choice[:, t, None, None].expand(shape), c.reward[:, t, None, None].expand(shape)
    if contexts is not None:
        ctx = contexts[:, t, None, None, :].expand(*shape, contexts.shape[-1])
        return inputs.rule.drift(inputs.params, w, x, y, r, ctx), state
    return inputs.rule.step(inputs.params, state, w, x, y, r)


def run_particle_filter(inputs: FilterInputs, *, n_particles: int, n_replicates: int, ess_threshold: float,
                        generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Run ``n_replicates`` bootstrap filters per animal.

    Returns
    -------
    p_right : Tensor, shape (R, animals, T)
        Predictive probability of a right choice on each trial.
    log_pred : Tensor, shape (R, animals, T)
        Log predictive of the observed choice (0 on unobserved trials and padding).
    """
    c, rule = inputs.cohort, inputs.rule
    a, n_t, k = c.features.shape
    dtype = c.features.dtype
    shape = (a, n_replicates, n_particles)
    gate = (c.observed & c.valid).to(dtype)
    sign = 2.0 * c.choice - 1.0
    with torch.no_grad():
        contexts = rule.contexts(inputs.params, c.features, c.choice, c.reward) if rule.fittable else None
        state = rule.init_context(inputs.params, shape, k).to(dtype)
        w = inputs.init_mean[:, None, None] + inputs.init_sd[:, None, None] * torch.randn(
            *shape, k, generator=generator, dtype=dtype)
        log_w = torch.full(shape, -math.log(n_particles), dtype=dtype)
        p_out, ll_out = [], []
        for t in range(n_t):
            eta = (w * c.features[:, t, None, None, :]).sum(-1)
            ll_i = F.logsigmoid(sign[:, t, None, None] * eta)
            p_out.append((log_w.exp() * torch.sigmoid(eta)).sum(-1))
            ll_out.append(gate[:, t, None] * torch.logsumexp(log_w + ll_i, -1))
            log_w = torch.log_softmax(log_w + gate[:, t, None, None] * ll_i, -1)
            ess = 1.0 / log_w.exp().square().sum(-1)
            need = (ess < ess_threshold * n_particles) & (gate[:, t, None] > 0)
            if bool(need.any()):
                log_w, (w, state) = _resample(log_w, [w, state], need, generator)
            dw, new_state = _drift(inputs, w, state, contexts, t)
            g = gate[:, t, None, None, None]
            w = w + g * dw
            state = torch.where(g > 0, new_state, state) if state.shape[-1] else state
            if t + 1 < n_t:
                sd = _noise_sd(inputs, t + 1)[:, None, None, :]
                w = w + sd * torch.randn(*shape, k, generator=generator, dtype=dtype)
    p = torch.stack(p_out, -1).permute(1, 0, 2) if p_out else c.choice.new_zeros(n_replicates, a, 0)
    ll = torch.stack(ll_out, -1).permute(1, 0, 2) if ll_out else c.choice.new_zeros(n_replicates, a, 0)
    return p, ll


def _gauss_hermite(n: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Nodes and weights for ``E[f(z)]``, ``z ~ N(0, 1)``."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    return (torch.as_tensor(nodes, dtype=dtype), torch.as_tensor(weights / weights.sum(), dtype=dtype))


def _adf_observe(m: Tensor, cov: Tensor, x: Tensor, sign: Tensor, gate: Tensor, gh: tuple[Tensor, Tensor]
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Predict one choice and condition the Gaussian ``N(m, cov)`` on it by moment matching.

    Returns the predictive p(right), the log predictive of the choice, and the updated mean and covariance.
    """
    nodes, weights = gh
    cx = (cov @ x.unsqueeze(-1)).squeeze(-1)
    mu, s2 = (m * x).sum(-1), (cx * x).sum(-1).clamp_min(0.0)
    z = mu.unsqueeze(-1) + s2.sqrt().unsqueeze(-1) * nodes
    p_right = (weights * torch.sigmoid(z)).sum(-1)
    lik = torch.sigmoid(sign.unsqueeze(-1) * z)
    evidence = (weights * lik).sum(-1)
    mz = (weights * lik * z).sum(-1) / evidence
    vz = ((weights * lik * (z - mz.unsqueeze(-1)) ** 2).sum(-1) / evidence).clamp_min(0.0)
    ok = (s2 > 1e-14) & (gate > 0)
    safe = torch.where(ok, s2, torch.ones_like(s2))
    gain = torch.where(ok, (mz - mu) / safe, torch.zeros_like(mu))
    shrink = torch.where(ok, (s2 - vz) / safe**2, torch.zeros_like(mu))
    m = m + gain.unsqueeze(-1) * cx
    cov = cov - shrink[:, None, None] * cx.unsqueeze(-1) * cx.unsqueeze(-2)
    return p_right, torch.log(evidence), m, 0.5 * (cov + cov.transpose(-1, -2))


def _adf_propagate(inputs: FilterInputs, m: Tensor, cov: Tensor, contexts: Tensor, t: int) -> tuple[Tensor, Tensor]:
    """Push ``N(m, cov)`` through ``w + drift(w)`` with spherical sigma points ``m +- sqrt(K) L e_i``."""
    c = inputs.cohort
    a, k = m.shape
    eye = torch.eye(k, dtype=m.dtype)
    chol, _ = torch.linalg.cholesky_ex(cov + 1e-12 * eye)
    offsets = math.sqrt(k) * chol.transpose(-1, -2)  # rows are the columns of L
    points = torch.cat([m.unsqueeze(1) + offsets, m.unsqueeze(1) - offsets], dim=1)  # (A, 2K, K)
    shape = points.shape[:-1]
    x = c.features[:, t, None, :].expand_as(points)
    y, r = c.choice[:, t, None].expand(shape), c.reward[:, t, None].expand(shape)
    ctx = contexts[:, t, None, :].expand(*shape, contexts.shape[-1])
    gate = (c.observed & c.valid)[:, t].to(m.dtype)[:, None, None]
    moved = points + gate * inputs.rule.drift(inputs.params, points, x, y, r, ctx)
    m_new = moved.mean(1)
    dev = moved - m_new.unsqueeze(1)
    return m_new, dev.transpose(-1, -2) @ dev / (2 * k)


def run_gaussian_filter(inputs: FilterInputs, *, n_quadrature: int = 32) -> tuple[Tensor, Tensor]:
    """Assumed-density (Gaussian) filter: deterministic one-step-ahead predictions.

    The belief about each animal's weights is kept Gaussian: a choice is absorbed by matching the mean and
    variance of the 1-D projection ``z = w . x`` (Gauss-Hermite quadrature), and the rule's drift is pushed
    through by the unscented transform (exact for the random walk). Needs a rule whose contexts come from
    the data (``fittable = True``).

    Returns
    -------
    p_right, log_pred : Tensor, shape (animals, T)
        Predictive probability of a right choice, and log predictive of the observed choice (0 where not
        observed).
    """
    c, rule = inputs.cohort, inputs.rule
    if not rule.fittable:
        raise ValueError(f"rule {rule.name} keeps latent state (fittable = False): use the particle filter")
    n_t = c.features.shape[1]
    dtype = c.features.dtype
    gh = _gauss_hermite(n_quadrature, dtype)
    gate = (c.observed & c.valid).to(dtype)
    sign = 2.0 * c.choice - 1.0
    m, cov = inputs.init_mean.clone(), torch.diag_embed(inputs.init_sd**2)
    p_out, ll_out = [], []
    with torch.no_grad():
        contexts = rule.contexts(inputs.params, c.features, c.choice, c.reward)
        for t in range(n_t):
            p, ll, m, cov = _adf_observe(m, cov, c.features[:, t], sign[:, t], gate[:, t], gh)
            p_out.append(p)
            ll_out.append(gate[:, t] * ll)
            m, cov = _adf_propagate(inputs, m, cov, contexts, t)
            if t + 1 < n_t:
                cov = cov + torch.diag_embed(_noise_sd(inputs, t + 1) ** 2)
    empty = c.choice.new_zeros(c.choice.shape)
    return (torch.stack(p_out, -1) if p_out else empty), (torch.stack(ll_out, -1) if ll_out else empty)
