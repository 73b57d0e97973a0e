"""The Bernoulli GLM policy and Gauss-Hermite expectations of its log-likelihood under a Gaussian.

The choice probability is ``p(y_t = 1) = sigmoid(w_t . x_t)``, so the log-likelihood of a choice
``y in {0, 1}`` is ``y z - softplus(z)`` with ``z = w . x``. Under a Gaussian belief over the weights the
projection ``z`` is 1-D Gaussian, ``N(m, v)``, and

    E[log p(y | z)] = y m - E[softplus(z)],
    d/dm = y - E[sigmoid(z)],            (Bonnet's theorem)
    d/dv = -E[sigmoid(z) (1 - sigmoid(z))] / 2,   (Price's theorem)

which we evaluate by Gauss-Hermite quadrature: deterministic, accurate, and cheap for every trial at once.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bernoulli_log_likelihood", "choice_probability", "expected_log_likelihood", "gauss_hermite"]


def choice_probability(weights: Tensor, features: Tensor) -> Tensor:
    """Return ``p(y = 1) = sigmoid(w . x)``; shapes ``(..., K)`` -> ``(...)``."""
    return torch.sigmoid((weights * features).sum(-1))


def bernoulli_log_likelihood(logits: Tensor, choice: Tensor, observed: Tensor | None = None) -> Tensor:
    """Return per-trial ``log p(y | z)``, zero where ``observed`` is False.

    Parameters
    ----------
    logits : Tensor
        ``z = w . x`` per trial.
    choice : Tensor
        1 = right, 0 = left (any value where not observed).
    observed : Tensor of bool, optional
        Trials with a likelihood term.
    """
    ll = choice * logits - F.softplus(logits)
    return ll if observed is None else torch.where(observed, ll, torch.zeros_like(ll))


@lru_cache(maxsize=8)
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.hermite.hermgauss(n)
    return nodes * math.sqrt(2.0), weights / math.sqrt(math.pi)


def gauss_hermite(n: int = 32, *, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Return nodes and weights for ``E_{u ~ N(0, 1)}[g(u)] ~= sum_i w_i g(u_i)``."""
    nodes, weights = _hermite(n)
    dtype = dtype or torch.get_default_dtype()
    return torch.as_tensor(nodes, dtype=dtype), torch.as_tensor(weights, dtype=dtype)


def expected_log_likelihood(mean: Tensor, var: Tensor, choice: Tensor, *, n_points: int = 32
                            ) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``E[log p(y | z)]`` and its derivatives in ``m`` and ``v`` for ``z ~ N(m, v)``.

    Parameters
    ----------
    mean, var : Tensor
        Mean and variance of the logit ``z`` per trial (``var >= 0``).
    choice : Tensor
        Observed choice, 1 = right, 0 = left.
    n_points : int
        Number of Gauss-Hermite nodes.

    Returns
    -------
    value, d_mean, d_var : Tensor
        The expectation, ``dE/dm`` and ``dE/dv`` (``dE/dv <= 0``: the log-likelihood is concave).
    """
    nodes, weights = gauss_hermite(n_points, dtype=mean.dtype)
    sd = var.clamp_min(0).sqrt()
    e_softplus, e_prob, e_curv = (torch.zeros_like(mean + sd) for _ in range(3))
    for node, weight in zip(nodes.tolist(), weights.tolist(), strict=True):  # one node at a time: O(n) memory
        z = mean + sd * node
        prob = torch.sigmoid(z)
        e_softplus += weight * F.softplus(z)
        e_prob += weight * prob
        e_curv += weight * prob * (1 - prob)
    return choice * mean - e_softplus, choice - e_prob, -0.5 * e_curv
