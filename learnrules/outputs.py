"""Write a fitted model to a folder: tables, model files, ArviZ NetCDF, figures and a JSON summary.

Layout of ``DIR`` (see the README's "Reading the outputs"):

- ``weights.csv``: tidy posterior weights keyed by the input table's subject, session and trial (plus
  trial_index, feature, mean, sd, lower, upper; :func:`weights_table`);
- ``parameters.csv``: rule parameters and noise with credible intervals (variational fits; with per-animal
  pooling the population median);
- ``animal_parameters.csv``, ``population.csv``: with ``pooling`` hierarchical or independent, each animal's
  rule parameters with intervals beside its unpooled estimate, and the population median, sd and group
  differences (:func:`pooled_tables`);
- ``fit.npz``: the :class:`~learnrules.inference.result.FitResult` (``FitResult.load``), and for neural
  rules ``rule.pt``, the trained network (``learnrules.models.neural.load_neural_rule``);
- ``posterior.nc``: ArviZ InferenceData (posterior draws, pointwise log-likelihood, predictions);
- ``summary.json``: rule, method, parameters, ELBO, timings, held-out scores when computed;
- ``figures/``: ``weights.png``, ``elbo.png``, ``animal_parameters.png`` (per-animal pooling), ``rule_map.png``,
  ``drift_field.png`` (when the features are bias and stimuli), ``learning_curves.png``, ``psychometric.png``
  (when the table has stimuli).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learnrules.behavior.features import animal_features
from learnrules.behavior.trials import TrialData
from learnrules.inference.result import FitResult
from learnrules.inference.twin import simulate_twin
from learnrules.models.hybrid import HybridRule
from learnrules.models.neural import NeuralRule, save_neural_rule
from learnrules.models.neural_grid import STIMULUS_FEATURES, rule_drift_grid
from learnrules.models.rule import LearningRule, as_params
from learnrules.plots import (
    plot_drift_field,
    plot_elbo,
    plot_forest,
    plot_learning_curves,
    plot_psychometric,
    plot_rule_map,
    plot_weights,
)
from learnrules.plots.rules import rule_update_table
from learnrules.workflow import FittedModel

__all__ = ["fit_summary", "pooled_tables", "twin_tables", "weights_table", "write_figures", "write_fit",
           "write_json"]

logger = logging.getLogger(__name__)

_RULE_GRID = 9  # weight values per axis of the rule map (keeps it quick for neural rules)
_DRIFT_GRID = 17  # weight values per axis of the drift field


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (NumPy values converted, NaN as null); return the path."""
    path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    return path


def fit_summary(model: FittedModel, data: TrialData) -> dict[str, Any]:
    """Return the JSON-ready summary of a fit (rule, method, parameters, noise, ELBO, timing, network shape)."""
    res = model.result
    return {
        "rule": model.name, "rule_class": res.rule_name, "method": model.method, "note": model.note,
        "features": list(res.feature_names), "subjects": list(res.subjects), "n_animals": data.n_animals,
        "n_trials": data.n_trials, "choice_coding": data.choice_coding, "nogo_dropped": data.n_nogo_dropped,
        "elbo": res.elbo, "elbo_per_trial": res.elbo / max(data.n_trials, 1),
        "elbo_meaning": "log-likelihood of the deterministic rollout" if model.method == "rollout"
        else "evidence lower bound (nats)",
        "converged": res.converged, "n_steps": res.n_steps, "elapsed_s": res.elapsed_s,
        "sigma": dict(zip(res.feature_names, res.sigma.tolist(), strict=True)),
        "sigma_session": None if res.sigma_session is None
        else dict(zip(res.feature_names, res.sigma_session.tolist(), strict=True)),
        "params": {k: np.asarray(v).tolist() for k, v in res.params.items()},
        "parameters": res.parameters.to_dict(orient="records"),
        "band_level": res.band_level,
        "network": model.rule.config.to_dict() if isinstance(model.rule, NeuralRule) else None,
        "validation": dict(model.validation) or None,
    }


def twin_tables(model: FittedModel, data: TrialData, *, n_twins: int = 3, seed: int | None = 0
                ) -> list[pd.DataFrame]:
    """Simulate ``n_twins`` digital twins of every animal with the fitted rule, noise and first weights."""
    res = model.result
    params = res.params
    first = {s: res.weights_mean[i, 0] for i, s in enumerate(res.subjects)}
    base = np.random.default_rng(seed).integers(2**31, size=n_twins)
    return [simulate_twin(data, model.scoring_rule, params, init_weights=first, sigma=res.sigma,
                          sigma_session=res.sigma_session, features=res.feature_names, seed=int(s)) for s in base]


def _rule_table(rule: LearningRule, params: Mapping[str, object], names: tuple[str, ...]) -> pd.DataFrame:
    grid = {n: np.linspace(-3.0, 3.0, _RULE_GRID) for n in names}
    return rule_update_table(rule, params, names, weights_grid=grid)


def _task_trials(data: TrialData, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the data's signed stimuli and correct sides (observed trials); None unless bias and stimuli."""
    if not set(names) <= STIMULUS_FEATURES or not set(names) - {"bias"}:
        return None
    stimuli, sides = [], []
    for animal in data:
        keep = animal.observed & np.isfinite(animal.answer)
        stimuli.append(animal_features(animal, ["stimulus"])[keep, 0])
        sides.append(animal.answer[keep])
    return np.concatenate(stimuli), np.concatenate(sides)


def _drift_table(rule: LearningRule, params: Mapping[str, object], names: tuple[str, ...],
                 trials: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    grid = {n: np.linspace(-3.0, 3.0, _DRIFT_GRID) for n in names}
    return rule_drift_grid(rule, as_params(params), weights_grid=grid, stimuli=trials[0], sides=trials[1],
                           feature_names=names)


def write_figures(model: FittedModel, data: TrialData, folder: Path, *, seed: int | None = 0,
                  truth: tuple[LearningRule, Mapping[str, object]] | None = None,
                  true_weights: np.ndarray | None = None) -> list[Path]:
    """Write the figures of one fit into ``folder``; return their paths.

    ``truth`` (rule, params) adds the true rule's map below the fitted one; ``true_weights``
    ``(animals, T, K)`` overlays the first animal's true trajectory.
    """
    folder.mkdir(parents=True, exist_ok=True)
    res, names, paths = model.result, model.result.feature_names, []
    truth_first = None if true_weights is None else np.asarray(true_weights)[0, :int(res.lengths[0])]
    paths.append(folder / "weights.png")
    plot_weights(res.weights, subject=res.subjects[0], true_weights=truth_first, path=paths[-1])
    paths.append(folder / "elbo.png")
    plot_elbo(res.elbo_trace, path=paths[-1])
    if res.pooling != "shared":  # each animal's parameters, its own data's estimate and the population band
        paths.append(folder / "animal_parameters.png")
        plot_forest(res.animal_table, res.population_table, path=paths[-1])
    params = res.params
    true_table = None if truth is None else _rule_table(truth[0], truth[1], names)
    paths.append(folder / "rule_map.png")
    plot_rule_map(_rule_table(model.scoring_rule, params, names), true_update_table=true_table, path=paths[-1])
    if isinstance(model.rule, HybridRule):  # what the parametric rule misses
        paths.append(folder / "network_map.png")
        plot_rule_map(_rule_table(model.rule.part, {}, names), label="network", path=paths[-1])
    trials = _task_trials(data, names)
    if trials is not None:  # the expected update over the data's own stimuli and sides
        true_drift = None if truth is None else _drift_table(truth[0], truth[1], names, trials)
        paths.append(folder / "drift_field.png")
        plot_drift_field(_drift_table(model.scoring_rule, params, names, trials), true_drift_table=true_drift,
                         path=paths[-1])
    twins = twin_tables(model, data, seed=seed)
    real = data.to_frame()
    paths.append(folder / "learning_curves.png")
    plot_learning_curves(real, twins, path=paths[-1])
    if {"contrastLeft", "contrastRight"} <= set(real.columns) or "stimulus" in real.columns:
        paths.append(folder / "psychometric.png")
        plot_psychometric(real, twins, path=paths[-1])
    else:
        logger.info("no stimulus in the table: no psychometric.png")
    return paths


def write_posterior(model: FittedModel, data: TrialData, path: Path, *, n_draws: int | None, seed: int | None
                    ) -> int:
    """Write the ArviZ export of a fit to NetCDF (``posterior.nc``); return its number of draws."""
    from learnrules.inference.arviz_export import save_netcdf, to_inference_data  # lands after this module

    idata = to_inference_data(model.result, data, rule=model.rule, n_draws=n_draws, seed=seed)
    save_netcdf(idata, path)
    return int(idata.posterior.sizes["draw"])


def weights_table(result: FitResult, data: TrialData) -> pd.DataFrame:
    """Tidy weights keyed by the input table's own ``subject``, ``session`` and ``trial``, to merge back onto it.

    ``session`` is the table's session label (its date where it has a date and no session column), ``trial`` its
    trial number; ``trial_index`` counts the animal's fitted trials from 0 (no-go trials dropped on reading
    are not among them). Other columns as :attr:`FitResult.weights <learnrules.inference.result.FitResult.weights>`.
    """
    frame = result.weights.rename(columns={"trial": "trial_index"}).drop(columns="session")
    session = np.empty(len(frame), dtype=object)
    trial = np.zeros(len(frame), dtype=np.int64)
    index = frame["trial_index"].to_numpy()
    for subject, rows in frame.groupby("subject", sort=False).indices.items():
        animal = data[subject]
        session[rows], trial[rows] = animal.session_label[index[rows]], animal.trial[index[rows]]
    frame.insert(1, "session", session)
    frame.insert(2, "trial", trial)
    return frame


def pooled_tables(result: FitResult, out: Path) -> list[str]:
    """Write ``animal_parameters.csv`` (and ``population.csv`` when hierarchical) of a per-animal fit.

    Returns the names written (none for a shared fit).
    """
    if result.pooling == "shared":
        return []
    result.animal_table.to_csv(out / "animal_parameters.csv", index=False)
    if result.population_table.empty:
        return ["animal_parameters.csv"]
    result.population_table.to_csv(out / "population.csv", index=False)
    return ["animal_parameters.csv", "population.csv"]


def write_fit(model: FittedModel, data: TrialData, out: str | Path, *, seed: int | None = 0,
              n_draws: int | None = None,
              heldout: Mapping[str, Any] | None = None,
              truth: tuple[LearningRule, Mapping[str, object]] | None = None,
              true_weights: np.ndarray | None = None,
              history_features: pd.DataFrame | None = None) -> dict[str, Any]:
    """Write every output of one fit into ``out`` (created); return the summary written to summary.json.

    ``n_draws`` posterior draws go to ``posterior.nc``; by default
    :func:`~learnrules.inference.arviz_export.default_draws` chooses them. ``history_features`` (the table of
    :func:`~learnrules.inference.evaluation.missing_features.history_feature_evidence`) goes to
    ``history_features.csv`` and to the summary.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = model.result
    weights_table(res, data).to_csv(out / "weights.csv", index=False)
    res.parameters.to_csv(out / "parameters.csv", index=False)
    res.save(out / "fit.npz")
    files = ["weights.csv", "parameters.csv", "fit.npz", *pooled_tables(res, out)]
    if isinstance(model.rule, NeuralRule):
        save_neural_rule(model.rule, out / "rule.pt")
        files.append("rule.pt")
    draws = write_posterior(model, data, out / "posterior.nc", n_draws=n_draws, seed=seed)
    files.append("posterior.nc")
    figures = write_figures(model, data, out / "figures", seed=seed, truth=truth, true_weights=true_weights)
    files += [str(p.relative_to(out)) for p in figures]
    summary = fit_summary(model, data)
    if res.pooling != "shared":
        summary["pooling"] = res.pooling
    summary["posterior_draws"] = draws
    summary["heldout"] = dict(heldout) if heldout is not None else None
    if history_features is not None:
        history_features.to_csv(out / "history_features.csv", index=False)
        files.append("history_features.csv")
        summary["history_features"] = history_features.to_dict(orient="records")
    summary["files"] = files + ["summary.json"]
    write_json(out / "summary.json", summary)
    logger.info("wrote %d files to %s", len(summary["files"]), out)
    return summary
