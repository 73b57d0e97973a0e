"""Tables and the result object of a per-animal (hierarchical or independent) fit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm
from torch import Tensor

from learnrules.inference.result import FitResult
from learnrules.inference.variational.population import PopulationPosterior
from learnrules.inference.variational.vi import Posterior
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule

if TYPE_CHECKING:
    from learnrules.inference.variational.fit import FitConfig
    from learnrules.inference.variational.pooling import PooledTheta

__all__ = ["animal_table", "population_table", "pooled_result"]

ANIMAL_COLUMNS = ["subject", "group", "parameter", "feature", "mean", "sd", "lower", "upper", "unpooled",
                  "unpooled_lower", "unpooled_upper"]
POPULATION_COLUMNS = ["group", "parameter", "feature", "quantity", "mean", "sd", "lower", "upper"]


def _entries(theta: PooledTheta) -> list[tuple[str, str, int]]:
    """Return ``(parameter, feature, flat index)`` of every entry of an animal's parameter vector."""
    out, offset = [], 0
    for name in theta.names:
        size = int(np.prod(theta.shapes[name], dtype=int))
        feats = theta.feature_names if theta.per_feature[name] else [""] * size
        out += [(name, f, offset + i) for i, f in enumerate(feats)]
        offset += size
    return out


def _constrained(theta: PooledTheta, name: str, u: Tensor) -> Tensor:
    return theta.transforms[name](u)


def animal_table(theta: PooledTheta, posterior: PopulationPosterior, subjects: tuple[str, ...],
                 group_names: tuple[str, ...], *, level: float) -> pd.DataFrame:
    """Return each animal's parameters (mode, delta-method sd, transformed Gaussian interval), pooled and not."""
    z = norm.ppf(0.5 + level / 2)
    mean, sd = posterior.animal_mean, torch.diagonal(posterior.animal_cov, dim1=-2, dim2=-1).sqrt()
    raw, raw_sd = posterior.unpooled_mean, posterior.unpooled_sd
    rows = []
    for name, feature, j in _entries(theta):
        u, s = mean[:, j], sd[:, j]
        value = _constrained(theta, name, u)
        slope = theta.transforms[name].log_abs_det_jacobian(u, value).exp()
        lower, upper = _constrained(theta, name, u - z * s), _constrained(theta, name, u + z * s)
        free = _constrained(theta, name, raw[:, j])
        free_lo = _constrained(theta, name, raw[:, j] - z * raw_sd[:, j])
        free_hi = _constrained(theta, name, raw[:, j] + z * raw_sd[:, j])
        for a, subject in enumerate(subjects):
            rows.append((subject, group_names[int(theta.group[a])], name, feature, float(value[a]),
                         float(slope[a] * s[a]), float(lower[a]), float(upper[a]), float(free[a]),
                         float(free_lo[a]), float(free_hi[a])))
    return pd.DataFrame(rows, columns=ANIMAL_COLUMNS)


def population_table(theta: PooledTheta, posterior: PopulationPosterior, group_names: tuple[str, ...], *,
                     level: float) -> pd.DataFrame:
    """Return the population median and sd per parameter entry, and group differences, with intervals.

    The median is the transformed population mean (the median of the animals' constrained values); the sd is
    on the unconstrained scale (for a positive rate, the sd of its log); a difference is on the unconstrained
    scale too (for a positive rate, the log of the ratio of the group medians).
    """
    if theta.pooling != "hierarchical":
        return pd.DataFrame(columns=POPULATION_COLUMNS)
    z = norm.ppf(0.5 + level / 2)
    n_groups, n_entries = posterior.mu.shape
    var = torch.diagonal(posterior.cov)
    rows = []
    for name, feature, j in _entries(theta):
        for gi, group in enumerate(group_names):
            u, s = posterior.mu[gi, j], var[gi * n_entries + j].sqrt()
            value = _constrained(theta, name, u)
            slope = theta.transforms[name].log_abs_det_jacobian(u, value).exp()
            rows.append((group, name, feature, "median", float(value), float(slope * s),
                         float(_constrained(theta, name, u - z * s)), float(_constrained(theta, name, u + z * s))))
            if gi:
                i0, i1 = j, gi * n_entries + j
                d = posterior.mu[gi, j] - posterior.mu[0, j]
                sd_d = (posterior.cov[i1, i1] + posterior.cov[i0, i0] - 2 * posterior.cov[i0, i1]).clamp_min(0).sqrt()
                rows.append((f"{group}-{group_names[0]}", name, feature, "difference", float(d), float(sd_d),
                             float(d - z * sd_d), float(d + z * sd_d)))
        k = n_groups * n_entries + j
        log_sd, s = posterior.log_sd[j], var[k].sqrt()
        rows.append(("all", name, feature, "sd", float(log_sd.exp()), float(log_sd.exp() * s),
                     float((log_sd - z * s).exp()), float((log_sd + z * s).exp())))
    return pd.DataFrame(rows, columns=POPULATION_COLUMNS)


def _param_table(theta: PooledTheta, pop: pd.DataFrame, median: dict[str, Tensor]) -> pd.DataFrame:
    """Noise sd (point values) and the population median in the shared fit's table format."""
    rows = [("sigma", f, v, 0.0, v, v, False) for f, v in zip(theta.feature_names,
                                                              theta.log_sigma.detach().exp().tolist(), strict=True)]
    for name, feature, _ in _entries(theta):
        if len(pop):
            hit = pop[(pop.parameter == name) & (pop.feature == feature) & (pop.quantity == "median")].iloc[0]
            rows.append((name, feature, hit["mean"], hit["sd"], hit["lower"], hit["upper"], False))
        else:
            value = float(median[name].reshape(-1)[theta.feature_names.index(feature) if feature else 0])
            rows.append((name, feature, value, 0.0, value, value, False))
    return pd.DataFrame(rows, columns=["parameter", "feature", "mean", "sd", "lower", "upper", "clamped"])


def pooled_result(rule: LearningRule, cohort: CohortTensors, theta: PooledTheta, post: Posterior,
                  posterior: PopulationPosterior, group_names: tuple[str, ...], *, trace: list[float],
                  converged: bool, n_steps: int, elapsed: float, config: FitConfig) -> FitResult:
    """Return the :class:`FitResult` of a per-animal fit (arrays as the shared fit's, plus the pooled tables)."""
    hyper = theta.hyper().detach()
    valid = cohort.valid.numpy()
    session = np.where(valid, np.cumsum(cohort.session_start.numpy(), axis=1) - 1, -1)
    mean = post.mean.numpy() * valid[..., None]
    wcov = post.cov.numpy() * valid[..., None, None]
    sd = np.sqrt(np.clip(np.diagonal(wcov, axis1=-2, axis2=-1), 0, None))
    centre = posterior.mu[theta.group].mean(0)  # the population mean over the animals' groups
    median, animals, offset = {}, {}, 0
    for name in theta.names:
        shape, size = theta.shapes[name], int(np.prod(theta.shapes[name], dtype=int))
        median[name] = theta.transforms[name](centre[offset:offset + size].reshape(shape)).detach()
        block = posterior.animal_mean[:, offset:offset + size].reshape(-1, *shape)
        animals[name] = theta.transforms[name](block).detach().numpy()
        offset += size
    pop = population_table(theta, posterior, group_names, level=config.band_level)
    return FitResult(
        rule_name=rule.name, feature_names=tuple(cohort.feature_names), subjects=tuple(cohort.subjects),
        weights_mean=mean, weights_sd=sd, weights_cov=wcov, valid=valid, session=session,
        sigma=hyper.sigma.numpy(), sigma_session=None if hyper.sigma_session is None else hyper.sigma_session.numpy(),
        sigma_init=hyper.sigma_init.numpy(), init_mean=hyper.init_mean.numpy(),
        params={k: v.numpy() for k, v in median.items()}, param_table=_param_table(theta, pop, median),
        elbo_trace=np.asarray(trace), elbo=trace[-1], converged=converged, n_steps=n_steps, elapsed_s=elapsed,
        band_level=config.band_level, pooling=theta.pooling, animal_params=animals,
        animal_param_cov=posterior.animal_cov.numpy(),
        animal_table=animal_table(theta, posterior, tuple(cohort.subjects), group_names, level=config.band_level),
        population_table=pop)
