"""Non-Markov rules whose context is an exponential filter of the observed history.

Both contexts obey ``c_t = decay * c_{t-1} + u_t`` with ``u_t`` built from trial t's data only, so the
weights stay Markov given the data and :func:`exp_filter` computes a whole sequence's contexts in chunks
(a small matrix product per chunk, a Python loop only over chunks), differentiably in the decay.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import constraints

from learnrules.models.rule import LearningRule, Parameter, Params
from learnrules.other_rules.reinforce import policy_score

__all__ = ["exp_filter", "EligibilityTrace", "RewardGatedReinforce"]

_CHUNK = 64


def exp_filter(u: Tensor, decay: Tensor, init: Tensor, *, chunk: int = _CHUNK) -> Tensor:
    """Return ``c_t = decay * c_{t-1} + u_t`` for every t, with ``c_{-1} = init``.

    Parameters
    ----------
    u : Tensor, shape (*batch, T, C)
        Inputs.
    decay : Tensor, shape () or (C,)
        Decay per step, in [0, 1].
    init : Tensor, shape (*batch, C)
        State before the first step.
    chunk : int
        Steps solved at once by a lower-triangular matrix of decay powers.

    Returns
    -------
    Tensor, shape (*batch, T, C)
    """
    *batch, t_len, c = u.shape
    if t_len == 0:
        return u
    n = -(-t_len // chunk)
    padded = torch.nn.functional.pad(u, (0, 0, 0, n * chunk - t_len)).reshape(*batch, n, chunk, c)
    idx = torch.arange(chunk)
    lags = (idx[:, None] - idx[None, :]).clamp(min=0).to(u.dtype)
    mask = (idx[:, None] >= idx[None, :]).to(u.dtype)
    decay = torch.as_tensor(decay, dtype=u.dtype)
    if decay.dim() == 0:
        local = torch.einsum("ij,...njc->...nic", decay ** lags * mask, padded)
        carry_gain = (decay ** (idx + 1).to(u.dtype)).unsqueeze(-1)                # (L, 1)
    else:
        local = torch.einsum("cij,...njc->...nic", decay[:, None, None] ** lags * mask, padded)
        carry_gain = (decay[None, :] ** (idx + 1).to(u.dtype)[:, None])            # (L, C)
    carry = init
    out = []
    for k in range(n):
        block = local[..., k, :, :] + carry_gain * carry.unsqueeze(-2)
        out.append(block)
        carry = block[..., -1, :]
    return torch.stack(out, dim=-3).reshape(*batch, n * chunk, c)[..., :t_len, :]


@dataclass(frozen=True)
class EligibilityTrace(LearningRule):
    r"""Reward-gated eligibility trace of (features x choice) coincidences.

    .. math:: e_t = \lambda e_{t-1} + (2 y_t - 1) x_t, \qquad \Delta w_t = \alpha \odot (r_t - b) \, e_t

    Each trial leaves a Hebbian trace (presynaptic ``x`` times postsynaptic choice, +1 right / -1 left) that
    decays by ``lambda`` per trial; the reward relative to a baseline ``b`` gates the whole trace, so a reward
    also credits recent past choices (three-factor rules with eligibility traces: Izhikevich 2007;
    Gerstner et al. 2018, "Eligibility traces and plasticity on behavioral time scales"; reward-modulated
    STDP, Florian 2007). The context is ``e_t`` (K values, data only); ``lambda = 0`` gives a Markov
    three-factor Hebbian rule with a constant baseline.
    """

    parameters: ClassVar = MappingProxyType({
        "alpha": Parameter(0.005, constraints.positive, per_feature=True, doc="learning rate of each weight"),
        "lam": Parameter(0.5, constraints.unit_interval, doc="trace decay per trial (lambda)"),
        "baseline": Parameter(0.7, constraints.unit_interval, doc="reward baseline b"),
    })
    markov: ClassVar[bool] = False

    # The trace has one entry per feature, so its size is K, known only from ``n_features``: -1 says so.
    context_size: ClassVar[int] = -1

    def init_context(self, params: Params, batch_shape: tuple[int, ...], n_features: int) -> Tensor:
        """Return a zero trace, shape ``(*batch_shape, K)``."""
        return torch.zeros(*batch_shape, n_features, dtype=torch.get_default_dtype())

    def next_context(self, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return ``lambda * e + (2y - 1) x``."""
        return params["lam"] * context + (2.0 * y - 1.0).unsqueeze(-1) * x

    def contexts(self, params: Params, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return the traces of a whole sequence, shape ``(*batch, T, K)``."""
        init = self.init_context(params, x.shape[:-2], x.shape[-1]).to(x.dtype)
        return exp_filter((2.0 * y - 1.0).unsqueeze(-1) * x, params["lam"], init)

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``alpha * (r - b) * e``."""
        return params["alpha"] * (r - params["baseline"]).unsqueeze(-1) * context


@dataclass(frozen=True)
class RewardGatedReinforce(LearningRule):
    r"""REINFORCE with baseline whose learning rate grows with the recent reward rate.

    .. math:: \bar r_t = (1 - \eta) \bar r_{t-1} + \eta r_t, \qquad
              \Delta w_t = (\alpha_0 + \alpha_1 \bar r_t) \odot (r_t - \beta) (y_t - p_t) x_t

    with ``rbar_{-1} = 1/2`` (chance). Liu, Geadah & Pillow (NeurIPS 2025) report that mice's inferred
    updates grow with the recent reward history; this is the simplest parametric form of that pattern, and
    it nests :class:`~learnrules.other_rules.reinforce.ReinforceBaseline` (``alpha1 -> 0``). The context is
    ``rbar_t`` (one value, data only).
    """

    parameters: ClassVar = MappingProxyType({
        "alpha0": Parameter(0.008, constraints.positive, per_feature=True, doc="rate at zero reward rate"),
        "alpha1": Parameter(0.032, constraints.positive, per_feature=True, doc="rate gain per unit reward rate"),
        "beta": Parameter(0.5, constraints.unit_interval, doc="reward baseline"),
        "eta": Parameter(0.05, constraints.unit_interval, doc="step size of the running reward average"),
    })
    context_size: ClassVar[int] = 1
    markov: ClassVar[bool] = False
    initial_rate: ClassVar[float] = 0.5

    def init_context(self, params: Params, batch_shape: tuple[int, ...], n_features: int) -> Tensor:
        """Return ``rbar = 1/2``, shape ``(*batch_shape, 1)``."""
        return torch.full((*batch_shape, 1), self.initial_rate, dtype=torch.get_default_dtype())

    def next_context(self, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return ``(1 - eta) rbar + eta r``."""
        eta = params["eta"]
        return (1.0 - eta) * context + eta * r.unsqueeze(-1)

    def contexts(self, params: Params, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return the running reward rates of a whole sequence, shape ``(*batch, T, 1)``."""
        eta = params["eta"]
        init = self.init_context(params, x.shape[:-2], x.shape[-1]).to(x.dtype)
        return exp_filter(eta * r.unsqueeze(-1), 1.0 - eta, init)

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``(alpha0 + alpha1 * rbar) * (r - beta) * (y - p) * x``."""
        rate = params["alpha0"] + params["alpha1"] * context
        return rate * (r - params["beta"]).unsqueeze(-1) * policy_score(w, x, y)
