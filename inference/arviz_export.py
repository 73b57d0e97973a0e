"""Convert a :class:`~learnrules.inference.result.FitResult` to ArviZ ``InferenceData`` (and NetCDF).

Draws are independent samples of the fitted posterior (one chain):

- ``posterior``: ``weights`` (animal, trial, feature; NaN on padding) drawn from each trial's Gaussian
  marginal ``N(mean_t, cov_t)``, and the noise sd and rule parameters drawn from their Laplace posterior on
  the unconstrained scale, then mapped through the parameters' constraints (fixed values repeat).
  Entries the Laplace step clamped (``FitResult.parameters``' ``clamped`` column: the data barely inform
  them) are named in the ``clamped_parameters`` attribute: their draws have the clamp's width, not the
  data's, and their likelihood-ratio interval is in the parameter table.
- ``log_likelihood``: ``choice`` (obs), the Bernoulli log-likelihood of every observed trial per draw. Each
  trial's term depends only on that trial's weights, so per-trial marginal draws are exact for it: ``az.loo``,
  ``az.waic`` and ``az.compare`` run on it (compare fits of the same data, whatever their rule).
- ``posterior_predictive``: ``choice`` (obs) simulated from the drawn weights.
- ``observed_data``: ``choice`` (obs); ``constant_data``: the design matrix, reward, and the prior of the
  initial weights. Every ``obs`` has ``subject`` and ``trial`` coordinates.
- ``sample_stats``: the ELBO trace over optimization ``step`` (not a per-draw statistic).

ArviZ 0.x (Python 3.11) is built with ``az.InferenceData``; ArviZ 1.x holds the same groups in an
``xarray.DataTree``: :func:`_assemble` and :func:`load_netcdf` are the only version-dependent lines.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

import arviz as az
import numpy as np
import torch
import xarray as xr
from torch.distributions import biject_to

from learnrules.behavior.trials import TrialData
from learnrules.inference.result import FitResult
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule
from learnrules.other_rules import RULES

__all__ = ["DRAWS_MAX_BYTES", "DRAWS_PREFERRED", "default_draws", "load_netcdf", "save_netcdf", "to_inference_data"]

logger = logging.getLogger(__name__)

_ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1

DRAWS_MAX_BYTES = 500e6
"""Bytes the posterior draws are kept under when their number is not given (no fewer than 10 draws)."""

DRAWS_PREFERRED = 100
"""Draws exported when their number is not given and they fit under :data:`DRAWS_MAX_BYTES`."""


def default_draws(n_trials: int, n_features: int, *, preferred: int = DRAWS_PREFERRED) -> int:
    """Return how many draws to export: ``preferred``, fewer (>= 10) where they would pass :data:`DRAWS_MAX_BYTES`.

    A draw of a trial stores ``4 K + 9`` bytes (float32 weights, float64 log-likelihood, int8 prediction):
    100 draws up to ~240,000 trials of 3 features, 23 at 10^6. The export also holds the data
    (``8 K + 9`` bytes per trial).
    """
    per_draw = max(n_trials, 1) * (4 * n_features + 9)
    return int(np.clip(DRAWS_MAX_BYTES // per_draw, 10, preferred))


def _cohort(fit: FitResult, data: TrialData | CohortTensors) -> CohortTensors:
    cohort = data if isinstance(data, CohortTensors) else CohortTensors.from_trials(
        data, fit.feature_names, dtype=torch.float64)
    if tuple(cohort.subjects) != tuple(fit.subjects):
        raise ValueError(f"data subjects {list(cohort.subjects)} differ from the fit's {list(fit.subjects)}")
    if tuple(cohort.feature_names) != tuple(fit.feature_names):
        raise ValueError(f"data features {list(cohort.feature_names)} differ from the fit's {list(fit.feature_names)}")
    if not np.array_equal(cohort.lengths.numpy(), fit.lengths):
        raise ValueError(f"data trial counts {cohort.lengths.tolist()} differ from the fit's {fit.lengths.tolist()}")
    return cohort


def _draw_weights(fit: FitResult, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draws ``(n_draws, animals, T, K)`` from each trial's marginal; NaN on padding.

    Stored as float32 (the draws' own spread is ~1e-2, far above its 1e-7 rounding) and built one animal at a
    time, so the float64 temporaries are one animal's and the export's memory is about the stored arrays'.
    """
    k = len(fit.feature_names)
    jitter = 1e-12 * np.eye(k)
    draws = np.full((n_draws, *fit.weights_mean.shape), np.nan, dtype=np.float32)
    for a, valid in enumerate(fit.valid):
        trials = np.flatnonzero(valid)
        chol = np.linalg.cholesky(fit.weights_cov[a, trials] + jitter)
        eps = rng.standard_normal((n_draws, trials.size, k))
        draws[:, a, trials] = fit.weights_mean[a, trials] + np.einsum("tij,ntj->nti", chol, eps)
    return draws


def _constraint_transform(fit: FitResult, name: str, rule: LearningRule | None):  # noqa: ANN202
    if name in ("sigma", "sigma_session"):
        return biject_to(torch.distributions.constraints.positive)
    cls = type(rule) if rule is not None else next((c for c in RULES.values() if c.__name__ == fit.rule_name), None)
    if cls is None or name not in cls.parameters:
        raise ValueError(f"pass rule= to export the parameter {name!r} of rule {fit.rule_name}")
    return biject_to(cls.parameters[name].constraint)


def _point_values(fit: FitResult) -> dict[str, np.ndarray]:
    values = {"sigma": np.asarray(fit.sigma, float)}
    if fit.sigma_session is not None:
        values["sigma_session"] = np.asarray(fit.sigma_session, float)
    values.update({name: np.asarray(v, float) for name, v in fit.params.items()})
    return values


def _draw_parameters(fit: FitResult, rule: LearningRule | None, n_draws: int, rng: np.random.Generator
                     ) -> dict[str, np.ndarray]:
    """Laplace draws of the noise sd and rule parameters on the constrained scale (fixed ones repeat)."""
    values = _point_values(fit)
    draws = {name: np.broadcast_to(v, (n_draws, *v.shape)).copy() for name, v in values.items()}
    if fit.pooling != "shared":
        draws.update(_animal_draws(fit, rule, n_draws, rng))
    names = [label.split("[")[0] for label in fit.param_names]
    if not names:
        return draws
    order = list(dict.fromkeys(names))
    transforms = {name: _constraint_transform(fit, name, rule) for name in order}
    centre = np.concatenate([transforms[n].inv(torch.as_tensor(values[n])).numpy().reshape(-1) for n in order])
    u = rng.multivariate_normal(centre, fit.param_cov, size=n_draws, method="eigh")
    offset = 0
    for name in order:
        size = values[name].size
        block = torch.as_tensor(u[:, offset:offset + size].reshape(n_draws, *values[name].shape))
        draws[name] = transforms[name](block).numpy()
        offset += size
    return draws


def _animal_draws(fit: FitResult, rule: LearningRule | None, n_draws: int, rng: np.random.Generator
                  ) -> dict[str, np.ndarray]:
    """Per-animal pooling: draws ``(n_draws, animals, *shape)`` of each animal's rule parameters.

    Each animal's unconstrained parameters are drawn from their Gaussian posterior (``animal_param_cov``) and
    mapped through the constraints.
    """
    names = list(fit.animal_params)
    transforms = {name: _constraint_transform(fit, name, rule) for name in names}
    centre = np.concatenate([transforms[n].inv(torch.as_tensor(np.asarray(fit.animal_params[n], float)))
                             .numpy().reshape(len(fit.subjects), -1) for n in names], axis=1)
    u = np.stack([rng.multivariate_normal(c, cov, size=n_draws, method="eigh")
                  for c, cov in zip(centre, fit.animal_param_cov, strict=True)], axis=1)
    out, offset = {}, 0
    for name in names:
        shape = np.shape(fit.animal_params[name])[1:]
        size = int(np.prod(shape, dtype=int))
        block = torch.as_tensor(u[..., offset:offset + size].reshape(n_draws, len(fit.subjects), *shape))
        out[name] = transforms[name](block).numpy()
        offset += size
    return out


def _param_dims(name: str, value: np.ndarray, k: int, animals: int | None = None) -> list[str]:
    """Dimension names of drawn parameters; ``animals`` given: per-animal draws, whose second axis is the animal."""
    lead = ["chain", "draw"]
    if animals is not None:
        lead, value = lead + ["animal"], value[:, 0]
    return lead + (["feature"] if value.shape[1:] == (k,) else [f"{name}_dim_{i}" for i in
                                                               range(value.ndim - 1)])


def _observations(fit: FitResult, cohort: CohortTensors) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Return the indices of the observed trials and their coordinates (``obs`` with ``subject`` and ``trial``)."""
    a_idx, t_idx = np.nonzero(cohort.observed.numpy())
    subjects = np.asarray(fit.subjects, dtype=str)[a_idx]
    return a_idx, t_idx, {"obs": np.arange(a_idx.size), "subject": ("obs", subjects), "trial": ("obs", t_idx)}


def _groups(fit: FitResult, cohort: CohortTensors, weights: np.ndarray, params: Mapping[str, np.ndarray],
            rng: np.random.Generator) -> dict[str, xr.Dataset]:
    k = len(fit.feature_names)
    a_idx, t_idx, per_obs = _observations(fit, cohort)
    x = cohort.features.numpy()[a_idx, t_idx]
    y = cohort.choice.numpy()[a_idx, t_idx]
    loglik = np.empty((weights.shape[0], a_idx.size))
    replicate = np.empty((weights.shape[0], a_idx.size), dtype=np.int8)
    for d, drawn in enumerate(weights):  # a draw at a time: no (draws x trials x K) temporaries
        logit = np.einsum("ok,ok->o", drawn[a_idx, t_idx], x)
        loglik[d] = -np.logaddexp(0.0, -(2 * y - 1) * logit)
        replicate[d] = rng.random(logit.shape) < 1 / (1 + np.exp(-logit))
    base = {"chain": [0], "draw": np.arange(weights.shape[0]), "feature": list(fit.feature_names)}
    trial_coords = {"animal": list(fit.subjects), "trial": np.arange(fit.valid.shape[1])}
    posterior = xr.Dataset(
        {"weights": (["chain", "draw", "animal", "trial", "feature"], weights[None])}
        | {name: (_param_dims(name, v, k, len(fit.subjects) if name in fit.animal_params else None), v[None])
           for name, v in params.items()},
        coords=base | trial_coords)
    draws_obs = {"chain": [0], "draw": base["draw"]} | per_obs
    return {
        "posterior": posterior,
        "log_likelihood": xr.Dataset({"choice": (["chain", "draw", "obs"], loglik[None])}, coords=draws_obs),
        "posterior_predictive": xr.Dataset({"choice": (["chain", "draw", "obs"], replicate[None])},
                                           coords=draws_obs),
        "observed_data": xr.Dataset({"choice": (["obs"], y.astype(np.int8))}, coords=per_obs),
        "constant_data": xr.Dataset(
            {"features": (["obs", "feature"], x), "reward": (["obs"], cohort.reward.numpy()[a_idx, t_idx]),
             "init_mean": (["animal", "feature"], np.asarray(fit.init_mean, float)),
             "sigma_init": (["feature"], np.asarray(fit.sigma_init, float))},
            coords=per_obs | {"feature": list(fit.feature_names), "animal": list(fit.subjects)}),
        "sample_stats": xr.Dataset({"elbo": (["step"], np.asarray(fit.elbo_trace, float))},
                                   coords={"step": np.arange(len(fit.elbo_trace))}),
    }


def _clamped(fit: FitResult) -> str:
    """Name the parameter-table rows the Laplace step clamped, e.g. ``sigma[stimulus], beta``."""
    table = fit.param_table
    if table.empty or "clamped" not in table:
        return "none"
    rows = table[table["clamped"].astype(bool)]
    return ", ".join(f"{p}[{f}]" if f else p for p, f in zip(rows["parameter"], rows["feature"], strict=True)) or "none"


def _attrs(fit: FitResult) -> dict[str, object]:
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inference_library": "learnrules",
        "inference_library_version": version("learnrules"),
        "method": "structured variational inference (banded Gauss-Newton) + Laplace for hyperparameters",
        "draws": "independent; weights from per-trial marginals of q, parameters from the Laplace posterior",
        "rule": fit.rule_name, "clamped_parameters": _clamped(fit), "elbo": float(fit.elbo),
        "converged": int(fit.converged),
        "n_steps": int(fit.n_steps), "elapsed_s": float(fit.elapsed_s), "band_level": float(fit.band_level),
        "torch_version": str(torch.__version__), "pyro_version": version("pyro-ppl"),
        "arviz_version": str(az.__version__),
    }


def _assemble(groups: Mapping[str, xr.Dataset]):  # noqa: ANN202
    """Build ArviZ 0.x InferenceData, or the xarray DataTree of ArviZ 1.x (the version adapter)."""
    if _ARVIZ_1:
        return xr.DataTree.from_dict(dict(groups))
    return az.InferenceData(**groups)


def to_inference_data(fit: FitResult, data: TrialData | CohortTensors, *, rule: LearningRule | None = None,
                      n_draws: int | None = None, seed: int | None = 0):  # noqa: ANN201
    """Export a fit as ArviZ ``InferenceData`` with posterior, pointwise log-likelihood and predictions.

    Parameters
    ----------
    fit : FitResult
        The fit.
    data : TrialData or CohortTensors
        The trials it was fitted to (same subjects, order and trial counts; features are rebuilt from
        ``fit.feature_names``).
    rule : LearningRule, optional
        The fitted rule, to map its parameters' Laplace draws through their constraints; needed only for
        rules outside :data:`learnrules.other_rules.RULES`.
    n_draws : int, optional
        Number of posterior draws. Each draw of each observed trial stores ``4 K + 9`` bytes (float32 weights,
        float64 log-likelihood, int8 prediction): about 80 MB for 200 draws of 20,000 trials x 3 features.
        Default :func:`default_draws`: :data:`DRAWS_PREFERRED`, fewer (logged) where they would pass
        :data:`DRAWS_MAX_BYTES`.
    seed : int, optional
        Seed of the draws.

    Returns
    -------
    arviz.InferenceData
        Groups posterior, log_likelihood, posterior_predictive, observed_data, constant_data, sample_stats
        (an ``xarray.DataTree`` of the same groups under ArviZ >= 1).

    Raises
    ------
    ValueError
        If ``data`` does not match the fit, or ``n_draws < 1``.
    """
    cohort = _cohort(fit, data)
    if n_draws is None:
        n_trials = int(cohort.observed.sum())
        n_draws = default_draws(n_trials, len(fit.feature_names))
        if n_draws < DRAWS_PREFERRED:
            logger.warning("%d posterior draws (not %d) to keep them under %.0f MB for %d trials; pass n_draws= "
                           "(--draws) to choose", n_draws, DRAWS_PREFERRED, DRAWS_MAX_BYTES / 1e6, n_trials)
    if n_draws < 1:
        raise ValueError(f"n_draws must be positive, got {n_draws}")
    rng = np.random.default_rng(seed)
    weights = _draw_weights(fit, n_draws, rng)
    params = _draw_parameters(fit, rule, n_draws, rng)
    groups = _groups(fit, cohort, weights, params, rng)
    attrs = _attrs(fit)
    for group in groups.values():
        group.attrs.update(attrs)
    return _assemble(groups)


def save_netcdf(idata, path: str | Path) -> Path:  # noqa: ANN001
    """Write an export to NetCDF; return the path."""
    path = Path(path)
    idata.to_netcdf(str(path))
    return path


def load_netcdf(path: str | Path):  # noqa: ANN201
    """Read an export written by :func:`save_netcdf`."""
    if _ARVIZ_1:
        return xr.open_datatree(str(path))
    return az.from_netcdf(str(path))
