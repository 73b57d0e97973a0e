"""One-step-ahead predictions under per-animal rule parameters (hierarchical or independent pooling).

A fitted animal is filtered with its own parameters. A new animal's parameters are unknown: its predictive
integrates over the population, ``p(y_t | y_<t) = sum_s w_{s,t} p(y_t | y_<t, theta_s)`` over seeded draws
``theta_s`` of the population (the fitted population Normal for a hierarchical fit; the rule's declared prior for
an independent one), each weighted by how well it predicted the animal's earlier choices,
``w_{s,t} ~ p(y_<t | theta_s)``. So the prediction starts at the population average and moves towards the
parameters the animal's own choices favour, as a Bayesian would (a Monte Carlo mixture of Gaussian filters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor
from torch.distributions import biject_to

from learnrules.inference.evaluation.evaluate import (
    PredictiveScore,
    _filter_inputs,
    run_gaussian_filter,
    score_from_probabilities,
)
from learnrules.inference.result import FitResult
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule

__all__ = ["animal_parameters", "population_draws", "pooled_filter_score"]


def animal_parameters(result: FitResult, subjects: Sequence[str], dtype: torch.dtype) -> dict[str, Tensor]:
    """Return fitted animals' own parameters, shape ``(animals, 1, *shape)`` (unknown animals: population median)."""
    own = {s: i for i, s in enumerate(result.subjects)}
    out = {}
    for name, values in result.animal_params.items():
        median = np.asarray(result.params[name], float)
        rows = [np.asarray(values[own[s]], float) if s in own else median for s in subjects]
        out[name] = torch.as_tensor(np.stack(rows), dtype=dtype).unsqueeze(1)
    return out


def population_draws(result: FitResult, rule: LearningRule, n_draws: int, *, seed: int | None = 0,
                     dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """Return ``n_draws`` seeded draws of a new animal's parameters, shape ``(n_draws, *shape)``.

    Hierarchical: the population Normal on the unconstrained scale (centred at ``result.params``, the median
    over the fitted animals' groups, with the fitted population sd). Independent: the rule's declared prior.
    """
    rng = np.random.default_rng(seed)
    table = result.population_table
    out = {}
    for name, spec in rule.parameters.items():
        transform = biject_to(spec.constraint)
        shape = np.shape(result.params[name])
        if result.pooling == "hierarchical":
            centre = transform.inv(torch.as_tensor(np.asarray(result.params[name], float), dtype=dtype))
            rows = table[(table["parameter"] == name) & (table["quantity"] == "sd")]
            sd = torch.as_tensor(rows["mean"].to_numpy(float).reshape(shape), dtype=dtype)
        else:
            centre = transform.inv(torch.full(shape, float(spec.default), dtype=dtype))
            sd = torch.full(shape, float(spec.prior_scale), dtype=dtype)
        z = torch.as_tensor(rng.standard_normal((n_draws, *shape)), dtype=dtype)
        out[name] = transform(centre + sd * z)
    return out


def _mixture(log_pred: Tensor, p_right: Tensor, n_draws: int) -> tuple[Tensor, Tensor]:
    """Combine ``(animals * draws, T)`` filter outputs into each animal's population-averaged predictive."""
    lp = log_pred.reshape(-1, n_draws, log_pred.shape[-1])
    pr = p_right.reshape(lp.shape)
    before = torch.cumsum(lp, -1) - lp  # log p(y_<t | theta_s)
    weights = torch.softmax(before, dim=1)
    mixed_ll = torch.logsumexp(before + lp, dim=1) - torch.logsumexp(before, dim=1)
    return (weights * pr).sum(1), mixed_ll


def pooled_filter_score(cohort: CohortTensors, rule: LearningRule, result: FitResult, *, init_mean: np.ndarray,
                        init_sd: np.ndarray, n_draws: int = 64, seed: int | None = 0) -> PredictiveScore:
    """Score ``cohort`` one step ahead with a per-animal fit (the Gaussian filter; module docstring).

    ``init_mean`` and ``init_sd`` ``(animals, K)`` are each animal's first-weight belief.
    """
    dtype = cohort.features.dtype
    known = np.array([s in set(result.subjects) for s in cohort.subjects])
    n, t = cohort.choice.shape
    p_right, loglik = torch.zeros(n, t, dtype=dtype), torch.zeros(n, t, dtype=dtype)
    sigma, session = result.sigma, result.sigma_session
    if known.any():
        idx = np.flatnonzero(known).tolist()
        part = cohort.select(idx)
        params = animal_parameters(result, part.subjects, dtype)
        inputs = _filter_inputs(part, rule, {}, sigma, init_mean[idx], init_sd[idx], session)
        p, ll = run_gaussian_filter(replace(inputs, params=params))
        p_right[idx], loglik[idx] = p, ll
    if (~known).any():
        idx = np.flatnonzero(~known).tolist()
        draws = population_draws(result, rule, n_draws, seed=seed, dtype=dtype)
        repeated = np.repeat(idx, n_draws).tolist()
        part = cohort.select(repeated)
        params = {k: v.repeat(len(idx), *([1] * (v.dim() - 1))).unsqueeze(1) for k, v in draws.items()}
        inputs = _filter_inputs(part, rule, {}, sigma, np.repeat(init_mean[idx], n_draws, 0),
                                np.repeat(init_sd[idx], n_draws, 0), session)
        p, ll = run_gaussian_filter(replace(inputs, params=params))
        p_right[idx], loglik[idx] = _mixture(ll, p, n_draws)
    return score_from_probabilities(cohort, p_right, loglik=loglik, method="gaussian")

