"""Simulation-based calibration (SBC) of a fit: draw truths from a stated prior, simulate, fit, rank the truths.

One replicate (:func:`sbc_replicate`) draws a rule's parameters from the fit's own prior (a Normal on the
unconstrained value, :attr:`~learnrules.models.rule.Parameter.prior_scale` around the declared default) and the
weight-noise sd from a stated log-uniform range (the fit puts no prior on it, so the range is the SBC's
statement; the likelihood dominates inside it), simulates a cohort, fits it, and ranks each unconstrained truth
among seeded draws of the fit's Gaussian (Laplace) posterior. Over many replicates a calibrated posterior gives
uniform ranks (Talts et al. 2018). The replicate also records whether each truth lies inside the fit's reported
90% interval (its table, likelihood-ratio bounds included) and how often the 90% weight band holds the true
weight trajectory. The statistics over replicates are :mod:`learnrules.synthetic.sbc_stats`'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import norm
from torch.distributions import biject_to

from learnrules.inference.result import FitResult
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.dynamics import DynamicsConfig
from learnrules.models.rule import LearningRule
from learnrules.synthetic.cohort import simulate_cohort

__all__ = ["SBCDesign", "draw_truth", "posterior_draws", "posterior_mode", "sbc_replicate",
           "unconstrained_truth"]


@dataclass(frozen=True)
class SBCDesign:
    """The simulated cohorts of an SBC run and the fit applied to each.

    Parameters
    ----------
    n_animals, n_trials : int
        Cohort size.
    sigma_range : tuple of float
        The true noise sd of each weight is log-uniform on this range, drawn per weight.
    init_sd : float
        Sd of the true initial weights around 0.
    n_draws : int
        Posterior draws per replicate; ranks lie in ``0 .. n_draws``.
    features : tuple of str
        GLM features.
    config : FitConfig
        Options of the fit (noise learned from a start of 0.05 by default).
    """

    n_animals: int = 4
    n_trials: int = 2000
    sigma_range: tuple[float, float] = (0.01, 0.08)
    init_sd: float = 0.5
    n_draws: int = 99
    features: tuple[str, ...] = ("bias", "stimulus")
    config: FitConfig = field(default_factory=lambda: FitConfig(dynamics=DynamicsConfig(sigma=0.05)))


def draw_truth(rule: LearningRule, design: SBCDesign, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw the rule's parameters from the fit's prior and ``sigma`` from ``design.sigma_range`` (log-uniform)."""
    k = len(design.features)
    truth = {}
    for name, spec in rule.parameters.items():
        transform = biject_to(spec.constraint)
        centre = float(transform.inv(torch.tensor(float(spec.default), dtype=torch.float64)))
        u = centre + spec.prior_scale * rng.standard_normal(spec.shape(k))
        truth[name] = transform(torch.as_tensor(u, dtype=torch.float64)).numpy()
    low, high = np.log(design.sigma_range)
    truth["sigma"] = np.exp(rng.uniform(low, high, size=k))
    return truth


def unconstrained_truth(rule: LearningRule, truth: dict[str, np.ndarray], names: tuple[str, ...],
                        features: tuple[str, ...]) -> np.ndarray:
    """Return the truths of the posterior's entries ``names`` (``"sigma[bias]"``, ``"beta"``) unconstrained."""
    out = []
    for label in names:
        name, _, feature = label.partition("[")
        value = np.atleast_1d(truth[name])
        value = value[features.index(feature[:-1])] if feature else value[0]
        if name in ("sigma", "sigma_session"):
            out.append(math.log(value))
        else:
            transform = biject_to(rule.parameters[name].constraint)
            out.append(float(transform.inv(torch.tensor(float(value), dtype=torch.float64))))
    return np.asarray(out)


def posterior_mode(rule: LearningRule, result: FitResult) -> np.ndarray:
    """Return the fit's hyperparameter mode, unconstrained, in the order of ``result.param_names``."""
    mode = {"sigma": np.log(result.sigma)}
    if result.sigma_session is not None:
        mode["sigma_session"] = np.log(result.sigma_session)
    for name, value in result.params.items():
        transform = biject_to(rule.parameters[name].constraint)
        mode[name] = transform.inv(torch.as_tensor(value, dtype=torch.float64)).numpy()
    centre = []
    for label in result.param_names:
        name, _, feature = label.partition("[")
        value = np.atleast_1d(mode[name])
        centre.append(value[result.feature_names.index(feature[:-1])] if feature else value[0])
    return np.asarray(centre, dtype=float)


def posterior_draws(rule: LearningRule, result: FitResult, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n_draws`` unconstrained hyperparameter vectors from the fit's Gaussian posterior, ``(n_draws, P)``."""
    return rng.multivariate_normal(posterior_mode(rule, result), result.param_cov, size=n_draws, method="eigh")


def _table_inside(result: FitResult, truth: dict[str, np.ndarray]) -> dict[str, tuple[bool, bool, bool]]:
    """Per entry ``name[feature]``: (truth inside the reported interval, interval finite, entry clamped)."""
    out = {}
    for row in result.parameters.itertuples(index=False):
        if row.parameter not in truth:
            continue
        value = np.atleast_1d(truth[row.parameter])
        true = value[result.feature_names.index(row.feature)] if row.feature else value[0]
        label = f"{row.parameter}[{row.feature}]" if row.feature else row.parameter
        finite = bool(np.isfinite(row.lower) and np.isfinite(row.upper))
        out[label] = (bool(row.lower <= true <= row.upper), finite, bool(row.clamped))
    return out


def sbc_replicate(rule: LearningRule, *, seed: int, design: SBCDesign | None = None) -> list[dict]:
    """Run one SBC replicate; return one row per posterior entry and one per weight (its band coverage).

    Parameter rows: ``kind="param"``, ``entry`` (``"alpha[bias]"``), ``true`` (unconstrained), ``rank`` among
    ``design.n_draws`` draws, ``inside_50`` / ``inside_90`` (the truth inside the draws' central interval),
    ``table_90`` (inside the fit's reported interval), ``finite`` (both reported bounds finite), ``clamped``,
    ``z`` (the truth's standardized error, ``(true - mode) / sd`` on the unconstrained scale). Weight rows:
    ``kind="band"``, ``entry`` (``"w[bias]"``), ``band_90`` (share of trials whose true weight lies inside the
    fit's 90% band), ``true`` (the weight's true noise sd).
    """
    design = design or SBCDesign()
    rng = np.random.default_rng(seed)
    truth = draw_truth(rule, design, rng)
    params = {k: v for k, v in truth.items() if k != "sigma"}
    cohort = simulate_cohort(rule, n_animals=design.n_animals, n_trials=design.n_trials, params=params,
                             sigma=truth["sigma"], features=design.features, init_sd=design.init_sd,
                             seed=int(rng.integers(2**31)), dtype=torch.float64)
    result = fit(cohort.tensors(), rule=rule, config=design.config, seed=seed)
    elapsed = result.elapsed_s
    names = tuple(result.param_names)
    true_u = unconstrained_truth(rule, truth, names, design.features)
    draws = posterior_draws(rule, result, design.n_draws, rng)
    ranks = (draws < true_u).sum(0)
    centre = posterior_mode(rule, result)
    sd = np.sqrt(np.clip(np.diag(result.param_cov), 1e-300, None))
    reported = _table_inside(result, truth)
    base = {"rule": rule.name, "seed": seed, "fit_s": elapsed, "converged": result.converged}
    rows = []
    lo50, hi50 = design.n_draws * 0.25, design.n_draws * 0.75
    lo90, hi90 = design.n_draws * 0.05, design.n_draws * 0.95
    for i, label in enumerate(names):
        inside, finite, clamped = reported.get(label, (np.nan, True, False))
        rows.append({**base, "kind": "param", "entry": label, "true": float(true_u[i]), "rank": int(ranks[i]),
                     "inside_50": bool(lo50 <= ranks[i] <= hi50), "inside_90": bool(lo90 <= ranks[i] <= hi90),
                     "table_90": inside, "finite": finite, "clamped": clamped,
                     "z": float((true_u[i] - centre[i]) / sd[i])})
    z = norm.ppf(0.5 + result.band_level / 2)
    lower, upper = result.weights_mean - z * result.weights_sd, result.weights_mean + z * result.weights_sd
    held = (cohort.weights >= lower) & (cohort.weights <= upper)
    for k, feature in enumerate(design.features):
        rows.append({**base, "kind": "band", "entry": f"w[{feature}]", "true": float(truth["sigma"][k]),
                     "band_90": float(held[..., k].mean()), "finite": bool(np.isfinite(upper[..., k]).all())})
    return rows
