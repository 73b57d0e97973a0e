"""Laplace posterior of the hyperparameters from the Hessian of the collapsed objective, and its table."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import torch
from scipy.stats import chi2, norm

from learnrules.inference.variational.theta import Theta
from learnrules.models.rule import LearningRule

if TYPE_CHECKING:
    from learnrules.inference.variational.optimize import Objective

__all__ = ["LaplacePosterior", "laplace_covariance", "parameter_table", "weight_covariance"]

logger = logging.getLogger(__name__)


def _labels(theta: Theta) -> list[str]:
    labels = []
    for name, tensor, _, per_feature in theta.laplace_leaves():
        if per_feature:
            labels += [f"{name}[{f}]" for f in theta.feature_names]
        else:
            labels += [name] * tensor.numel()
    return labels


class LaplacePosterior(NamedTuple):
    """Gaussian posterior of the unconstrained hyperparameters.

    ``clamped`` is the part of ``cov`` along Hessian directions whose curvature fell below the widest prior
    precision and was raised to it: there the width is the clamp's, not the data's. ``bounds`` holds, for each
    entry whose variance is mostly clamped, its likelihood-ratio interval on the unconstrained scale (the
    collapsed objective along that entry, the others at the mode; an infinite end where it stays flat).
    ``mean_jacobian`` (animals, T, K, P) is the derivative of the weight posterior's mean in the unconstrained
    hyperparameters (central differences of the solves the Hessian already makes; None without them), which
    :func:`weight_covariance` uses to carry the hyperparameters' uncertainty into the weight bands.
    """

    cov: np.ndarray
    names: tuple[str, ...]
    clamped: np.ndarray
    bounds: dict[int, tuple[float, float]]
    mean_jacobian: np.ndarray | None = None


HESSIAN_INNER_TOL = 1e-13  # relative tolerance of the inner solve while differencing gradients
_CLAMPED_SHARE = 0.5  # an entry is clamped when more than half of its variance lies along clamped directions


def laplace_covariance(objective: Objective, *, level: float = 0.9, step: float = 1e-3) -> LaplacePosterior:
    """Return the Laplace posterior of the unconstrained hyperparameters (see :class:`LaplacePosterior`).

    The Hessian of ``-(ELBO + log prior)`` (with ``q`` re-optimized at every point, i.e. the collapsed
    objective) is taken by central differences of the envelope gradient.
    """
    theta: Theta = objective.theta
    tensors = [t for _, t, _, _ in theta.laplace_leaves()]
    centre = torch.cat([t.detach().reshape(-1) for t in tensors])
    post0 = objective.post

    def assign(flat: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for t in tensors:
                t.copy_(flat[offset:offset + t.numel()].reshape(t.shape))
                offset += t.numel()

    def value_at(flat: torch.Tensor, start) -> torch.Tensor:  # noqa: ANN001
        """Evaluate the objective at ``flat``, its inner solve warm-started from the posterior ``start``."""
        assign(flat)
        objective.post = start
        return objective() * objective.scale

    def along(i: int, rounds: int = 3):  # noqa: ANN202
        """Return the objective along entry ``i`` by offset, warm-started from the nearest exact point."""
        starts = {0.0: post0}

        def checked(offset: float) -> tuple[float, bool]:
            start = starts[min(starts, key=lambda o: abs(o - offset))]
            moved = centre.clone()
            moved[i] += offset
            for _ in range(rounds):  # far from the mode q may need more rounds of the inner solver
                try:
                    value = float(value_at(moved, start))
                except FloatingPointError:
                    return math.inf, False
                start = objective.post
                if start.n_iter < objective.config.inner_max_iter:
                    starts[offset] = start
                    return value, True
            return value, False
        return checked

    def gradient(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the envelope gradient at ``flat`` (warm-started from the mode's posterior) and q's mean there."""
        grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(value_at(flat, post0), tensors)])
        return grad, objective.post.mean.detach()

    size = centre.numel()
    hess = torch.zeros(size, size, dtype=centre.dtype)
    jacobian = torch.zeros(*post0.mean.shape, size, dtype=centre.dtype)
    # Differences of gradients over a step of 1e-3 amplify the inner solve's error by 1e3: solve q tighter
    # than the fit needs (a relative 1e-8 left eigenvalues of -3 where the truth is ~0 on a small cohort).
    fit_config = objective.config
    objective.config = dataclasses.replace(fit_config, inner_tol=min(fit_config.inner_tol, HESSIAN_INNER_TOL),
                                           inner_max_iter=4 * fit_config.inner_max_iter)
    for i in range(size):
        delta = torch.zeros_like(centre)
        delta[i] = step
        (grad_up, mean_up), (grad_down, mean_down) = gradient(centre + delta), gradient(centre - delta)
        hess[:, i] = (grad_up - grad_down) / (2 * step)
        jacobian[..., i] = (mean_up - mean_down) / (2 * step)
    objective.config = fit_config
    hess = 0.5 * (hess + hess.T)
    values, vectors = torch.linalg.eigh(hess)
    # No direction may be wider than the widest prior (unit sd on the log scale for the noise sd, which has
    # none): a non-positive curvature means an unconverged or flat direction, not an infinite variance.
    floor = min([1.0] + [float(p.scale) ** -2 for p in theta.priors.values()])
    smallest = float(values.min())
    low = values < 0.9 * floor  # raised by more than 10% (a data-free direction sits at the prior's precision)
    values = values.clamp_min(floor)
    cov = vectors @ torch.diag(1 / values) @ vectors.T
    clamped = vectors[:, low] @ torch.diag(1 / values[low]) @ vectors[:, low].T
    share = torch.diagonal(clamped) / torch.diagonal(cov)
    bounds = {}
    for i in torch.nonzero(share > _CLAMPED_SHARE).flatten().tolist():
        with torch.no_grad():
            lower, upper = _likelihood_ratio_bounds(along(i), chi2.ppf(level, 1) / 2)
        bounds[i] = (float(centre[i]) + lower, float(centre[i]) + upper)
    assign(centre)
    objective.post = post0
    labels = tuple(_labels(theta))
    if low.any():
        logger.warning("Laplace Hessian has eigenvalue %.3g below the prior precision %.3g; clamped there. "
                       "Entries whose variance is mostly along clamped directions (an unconverged fit, or a "
                       "parameter the data barely inform, e.g. a noise sd near 0) get likelihood-ratio "
                       "intervals instead: %s", smallest, floor,
                       [labels[i] for i in bounds] or "none")
    return LaplacePosterior(cov.numpy(), labels, clamped.numpy(), bounds, jacobian.numpy())


def weight_covariance(post_cov: np.ndarray, laplace: LaplacePosterior) -> np.ndarray:
    """Return ``Cov(w_t)`` over the weights' and the hyperparameters' posteriors, shape (animals, T, K, K).

    ``q(w)`` is the posterior at the hyperparameters' mode; by the law of total variance the weights' marginal
    covariance adds the spread of q's mean over the hyperparameters' posterior, ``J Sigma J^T`` to first order
    (``J`` = ``laplace.mean_jacobian``, ``Sigma`` = ``laplace.cov``): the bands widen most where the data leave
    the noise sd uncertain (a small sd, whose log is wide).
    """
    jac = laplace.mean_jacobian
    if jac is None or not laplace.cov.size:
        return post_cov
    return post_cov + np.einsum("atkp,pq,atlq->atkl", jac, laplace.cov, jac)


def _likelihood_ratio_bounds(loss, rise: float, *, stride: float = 1.0, n_strides: int = 6,  # noqa: ANN001
                             n_bisect: int = 5) -> tuple[float, float]:
    """Return the offsets on each side of 0 where ``loss(offset)`` first rises by ``rise`` above ``loss(0)``.

    ``loss`` returns the value and whether it is exact; an inexact one (``q`` not converged, or the objective
    failed) only bounds the exact one from above, so it can show a point is inside but not that it is outside.
    Walks out in strides on each side, then bisects, and reports the outer end of the bracket. An end stays
    infinite where the loss does not rise that much within ``n_strides`` strides (a noise sd e^6 ~ 400 times
    smaller than the mode's is as good as 0) or the walk meets a point it cannot decide: the data are not
    shown to exclude that end.
    """
    base, _ = loss(0.0)

    def risen(offset: float) -> bool | None:
        value, exact = loss(offset)
        if value - base <= rise:
            return False
        return True if exact else None

    ends = []
    for sign in (-1.0, 1.0):
        end = sign * math.inf
        for k in range(1, n_strides + 1):
            outcome = risen(sign * k * stride)
            if outcome is None:
                break
            if outcome:
                inside, outside = (k - 1) * stride, k * stride
                for _ in range(n_bisect):
                    mid = 0.5 * (inside + outside)
                    outcome = risen(sign * mid)
                    if outcome is None:
                        break
                    inside, outside = (inside, mid) if outcome else (mid, outside)
                end = sign * outside
                break
        ends.append(end)
    return ends[0], ends[1]


def parameter_table(theta: Theta, laplace: LaplacePosterior, *, level: float = 0.9,
                    rule: LearningRule | None = None) -> pd.DataFrame:
    """Return rows parameter, feature, mean, sd, lower, upper, clamped for the noise sd and rule parameters.

    ``mean`` is the posterior mode on the constrained scale, ``sd`` its delta-method sd, and the interval is
    the transformed Gaussian interval of the unconstrained value. Fixed hyperparameters get ``sd = 0``.
    ``clamped`` marks rows whose Laplace variance lies mostly along clamped directions (the data barely
    inform them, e.g. a noise sd whose likelihood is flat towards 0): their interval is the likelihood-ratio
    one of :class:`LaplacePosterior` (``sd`` stays the clamp's); a derived row is only flagged.
    The rule's :meth:`~learnrules.models.rule.LearningRule.derived` quantities follow, their ``mean`` at the
    mode and their ``sd`` and interval from draws of the Laplace posterior.
    """
    cov = laplace.cov
    z = norm.ppf(0.5 + level / 2)
    sds = np.sqrt(np.clip(np.diag(cov), 0, None)) if cov.size else np.zeros(0)
    leaves = {name: (t, tr, pf) for name, t, tr, pf in theta.laplace_leaves()}
    rows, offset = [], 0
    entries = [(n, leaves[n]) for n, *_ in theta.laplace_leaves()]
    fixed = [("sigma", theta.log_sigma), ("sigma_session", theta.log_sigma_session)]
    for name, tensor in fixed:
        if tensor is not None and name not in leaves:
            for f, value in zip(theta.feature_names, tensor.detach().exp().tolist(), strict=True):
                rows.append((name, f, value, 0.0, value, value, False))
    for name, (tensor, transform, per_feature) in entries:
        u = tensor.detach().reshape(-1)
        sd_u = torch.as_tensor(sds[offset:offset + u.numel()], dtype=u.dtype) if len(sds) else torch.zeros_like(u)
        lower_u, upper_u = u - z * sd_u, u + z * sd_u
        flagged = [offset + i in laplace.bounds for i in range(u.numel())]
        for i in range(u.numel()):
            if flagged[i]:
                lower_u[i], upper_u[i] = laplace.bounds[offset + i]
        offset += u.numel()
        value = transform(u)
        slope = transform.log_abs_det_jacobian(u, value).exp()
        lower, upper = transform(lower_u), transform(upper_u)
        feats = theta.feature_names if per_feature else [""] * u.numel()
        for i, f in enumerate(feats):
            rows.append((name, f, float(value[i]), float(slope[i] * sd_u[i]), float(lower[i]), float(upper[i]),
                         bool(flagged[i])))
    if rule is not None:
        rows += _derived_rows(theta, rule, laplace, level)
    return pd.DataFrame(rows, columns=["parameter", "feature", "mean", "sd", "lower", "upper", "clamped"])


def _draws(theta: Theta, mode: dict, cov: np.ndarray, n_draws: int) -> dict:
    """Seeded draws of the rule parameters from the Gaussian N(mode, cov) on the unconstrained scale."""
    draws = {name: value.expand(n_draws, *value.shape) for name, value in mode.items()}
    if cov.size:
        leaves = theta.laplace_leaves()
        centre = torch.cat([t.detach().reshape(-1) for _, t, _, _ in leaves]).numpy()
        u = torch.as_tensor(np.random.default_rng(0).multivariate_normal(centre, cov, size=n_draws, method="eigh"))
        offset = 0
        for name, tensor, transform, _ in leaves:
            block = u[:, offset:offset + tensor.numel()].reshape(n_draws, *tensor.shape)
            offset += tensor.numel()
            if name in draws:
                draws[name] = transform(block)
    return draws


def _derived_rows(theta: Theta, rule: LearningRule, laplace: LaplacePosterior, level: float,
                  n_draws: int = 4000) -> list[tuple]:
    """Rows of the rule's derived quantities: value at the mode, sd and interval over seeded Laplace draws.

    A row is ``clamped`` when draws without the clamped directions lose more than half of its variance.
    """
    mode = {name: value.detach() for name, value in theta.hyper().params.items()}
    at_mode = rule.derived(mode)
    if not at_mode:
        return []
    sampled = rule.derived(_draws(theta, mode, laplace.cov, n_draws))
    informed = rule.derived(_draws(theta, mode, laplace.cov - laplace.clamped, n_draws))
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    rows = []
    for name, value in at_mode.items():
        per_feature = value.shape == (len(theta.feature_names),)
        feats = theta.feature_names if per_feature else [""]
        spread = sampled[name].reshape(n_draws, -1).double()
        share = 1 - informed[name].reshape(n_draws, -1).double().var(0) / spread.var(0).clamp_min(1e-300)
        lower, upper = torch.quantile(spread, q, dim=0)
        for i, f in enumerate(feats):
            rows.append((name, f, float(value.reshape(-1)[i]), float(spread[:, i].std()), float(lower[i]),
                         float(upper[i]), bool(share[i] > _CLAMPED_SHARE)))
    return rows
