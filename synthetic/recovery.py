"""Recovery scores: how well an inferred model matches the rule that generated the data.

- :func:`trajectory_correlation`: Pearson correlation of inferred and true weight trajectories, per feature.
- :func:`update_rmse`: RMSE of an inferred update function against the true rule, on a grid of
  (weights, stimulus, choice, reward) (:func:`update_grid`) or on the states a cohort visited
  (:func:`visited_states`), absolute and relative to the RMS of the true update.
- :func:`drift_rmse`: the same for the drift field, the update expected over the task's trials and the
  policy's choice at the visited weights: the part of a rule that choices identify best.
- :func:`loglik_gap`: per-trial held-out log-likelihood of the oracle minus that of a model, nats/trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import torch
from torch import Tensor

from learnrules.behavior.features import ibl_transform
from learnrules.models.neural_grid import expected_drift, expected_update, trial_mix
from learnrules.models.rule import LearningRule
from learnrules.synthetic.agent import coerce_params
from learnrules.synthetic.cohort import SimulatedCohort
from learnrules.synthetic.task import IBLTask

__all__ = ["UpdateStates", "UpdateError", "trajectory_correlation", "update_grid", "visited_states",
           "update_rmse", "task_stimuli", "drift_rmse", "loglik_gap"]

UpdateFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class UpdateStates:
    """A set of states at which to compare update functions.

    Parameters
    ----------
    weights, features : Tensor, shape (N, K)
    choice, reward : Tensor, shape (N,)
        1 = right / rewarded.
    context : Tensor, shape (N, C), optional
        The true rule's context at each state (non-Markov rules); None uses the rule's initial context.
    """

    weights: Tensor
    features: Tensor
    choice: Tensor
    reward: Tensor
    context: Tensor | None = None

    def __len__(self) -> int:
        return int(self.weights.shape[0])


@dataclass(frozen=True)
class UpdateError:
    """Error of an inferred update function.

    Parameters
    ----------
    rmse : float
        Root mean squared error over states and features.
    relative_rmse : float
        ``rmse`` divided by the root mean square of the true update (0 = perfect, 1 = as bad as predicting 0).
    rmse_per_feature : ndarray, shape (K,)
    n_states : int
    """

    rmse: float
    relative_rmse: float
    rmse_per_feature: np.ndarray
    n_states: int


def trajectory_correlation(true: np.ndarray, inferred: np.ndarray) -> np.ndarray:
    """Return the Pearson correlation of true and inferred weights for each feature.

    Parameters
    ----------
    true, inferred : ndarray, shape (..., K)
        Trajectories (e.g. ``(trials, K)`` or ``(animals, trials, K)``), pooled over all leading axes.

    Returns
    -------
    ndarray, shape (K,)
    """
    a, b = np.asarray(true, dtype=float), np.asarray(inferred, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"true and inferred shapes differ: {a.shape} vs {b.shape}")
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    a, b = a - a.mean(0), b - b.mean(0)
    denom = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(0) / denom, np.nan)


def _grid_column(name: str, signed: np.ndarray) -> np.ndarray:
    g_right, g_left = ibl_transform(np.clip(signed, 0, None)), ibl_transform(np.clip(-signed, 0, None))
    columns = {"bias": np.ones_like(signed), "stimulus": g_right - g_left, "stimulus_left": g_left,
               "stimulus_right": g_right}
    if name not in columns:
        raise ValueError(f"update_grid supports {sorted(columns)}, got {name!r}")
    return columns[name]


def update_grid(feature_names: Sequence[str] = ("bias", "stimulus"), *,
                weight_values: Sequence[float] = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0),
                contrasts: Sequence[float] = IBLTask().contrasts) -> UpdateStates:
    """Return the grid of every weight vector x signed contrast x choice x reward.

    Parameters
    ----------
    feature_names : sequence of str
        Exogenous features (``bias``, ``stimulus``, ``stimulus_left``, ``stimulus_right``).
    weight_values : sequence of float
        Values of each weight; the grid takes their K-fold product.
    contrasts : sequence of float
        Contrast levels, used on both sides (signed contrasts ``-c`` and ``+c``).

    Returns
    -------
    UpdateStates
        ``len(weight_values)**K * n_signed * 4`` states.
    """
    levels = np.asarray(contrasts, dtype=float)
    signed = np.unique(np.concatenate([-levels, levels]))
    x_rows = np.stack([_grid_column(n, signed) for n in feature_names], axis=1)
    w_rows = np.array(list(product(weight_values, repeat=len(feature_names))), dtype=float)
    combos = np.array(list(product(range(len(w_rows)), range(len(x_rows)), (0.0, 1.0), (0.0, 1.0))))
    dtype = torch.get_default_dtype()
    return UpdateStates(weights=torch.as_tensor(w_rows[combos[:, 0].astype(int)], dtype=dtype),
                        features=torch.as_tensor(x_rows[combos[:, 1].astype(int)], dtype=dtype),
                        choice=torch.as_tensor(combos[:, 2], dtype=dtype),
                        reward=torch.as_tensor(combos[:, 3], dtype=dtype))


def visited_states(cohort: SimulatedCohort, *, max_states: int | None = 20_000, seed: int | None = 0
                   ) -> UpdateStates:
    """Return the states the cohort's animals visited, with the true rule's contexts.

    Parameters
    ----------
    cohort : SimulatedCohort
        A simulated cohort (its rule must compute contexts from data, i.e. not a simulator-only rule).
    max_states : int, optional
        Subsample to at most this many states (None: all).
    seed : int, optional
        Seed of the subsample.
    """
    dtype = torch.get_default_dtype()
    a, t, k = cohort.weights.shape
    choice = torch.as_tensor(np.array(cohort.table["choice"], dtype=float).reshape(a, t), dtype=dtype)
    reward = torch.as_tensor(np.array(cohort.table["reward"], dtype=float).reshape(a, t), dtype=dtype)
    x = torch.as_tensor(cohort.features, dtype=dtype)
    params = coerce_params(cohort.rule, cohort.params, k)
    context = cohort.rule.contexts(params, x, choice, reward) if not cohort.rule.markov else None
    idx = np.arange(a * t)
    if max_states is not None and max_states < a * t:
        idx = np.sort(np.random.default_rng(seed).choice(a * t, size=max_states, replace=False))
    pick = torch.as_tensor(idx)
    return UpdateStates(weights=torch.as_tensor(cohort.weights, dtype=dtype).reshape(-1, k)[pick],
                        features=x.reshape(-1, k)[pick], choice=choice.reshape(-1)[pick],
                        reward=reward.reshape(-1)[pick],
                        context=None if context is None else context.reshape(a * t, -1)[pick])


def update_rmse(true_rule: LearningRule, true_params: Mapping[str, object], inferred_update: UpdateFn,
                states: UpdateStates | None = None, *,
                feature_names: Sequence[str] = ("bias", "stimulus")) -> UpdateError:
    """Return the RMSE of an inferred update function against the true rule.

    Parameters
    ----------
    true_rule : LearningRule
        The rule that generated the data.
    true_params : Mapping
        Its parameters (floats, arrays or tensors of the declared shapes).
    inferred_update : callable
        ``(w, x, y, r) -> dw`` on ``(N, K)``, ``(N, K)``, ``(N,)``, ``(N,)`` tensors.
    states : UpdateStates, optional
        Where to compare; None uses :func:`update_grid` of ``feature_names``.
    feature_names : sequence of str
        Features of the default grid.
    """
    states = update_grid(feature_names) if states is None else states
    n, k = states.weights.shape
    params = coerce_params(true_rule, true_params, k)
    context = states.context
    if context is None:
        context = true_rule.init_context(params, (n,), k)
    with torch.no_grad():
        true = true_rule.drift(params, states.weights, states.features, states.choice, states.reward, context)
        inferred = torch.as_tensor(inferred_update(states.weights, states.features, states.choice, states.reward))
    return _error(true, inferred)


def _error(true: Tensor, inferred: Tensor) -> UpdateError:
    if inferred.shape != true.shape:
        raise ValueError(f"inferred update has shape {tuple(inferred.shape)}, expected {tuple(true.shape)}")
    err = (inferred.to(true.dtype) - true).numpy()
    rmse = float(np.sqrt((err ** 2).mean()))
    scale = float(np.sqrt((true.numpy() ** 2).mean()))
    return UpdateError(rmse=rmse, relative_rmse=rmse / scale if scale > 0 else float("inf"),
                       rmse_per_feature=np.sqrt((err ** 2).mean(0)), n_states=int(true.shape[0]))


def task_stimuli(cohort: SimulatedCohort) -> tuple[np.ndarray, np.ndarray]:
    """Return every trial's signed stimulus (IBL transform, the ``stimulus`` feature) and correct side (1 = right)."""
    right, left = (ibl_transform(cohort.table[c].to_numpy(float)) for c in ("contrastRight", "contrastLeft"))
    return right - left, cohort.table["answer"].to_numpy(float)


def drift_rmse(true_rule: LearningRule, true_params: Mapping[str, object], inferred_update: UpdateFn,
               states: UpdateStates, *, stimuli: Sequence[float], sides: Sequence[float] | None = None,
               feature_names: Sequence[str] = ("bias", "stimulus")) -> UpdateError:
    """Return the RMSE of an inferred drift field against the true rule's, at the weights of ``states``.

    The drift field is the update expected over the task's trials and the policy's choice
    (:func:`~learnrules.models.neural_grid.expected_drift`): what choices identify best. A rule can move its
    update between kinds of trial at little cost in likelihood (REINFORCE with any reward baseline has
    REINFORCE's drift field), so a fit can recover the drift field well and the per-trial update
    (:func:`update_rmse`) poorly.

    Parameters
    ----------
    true_rule, true_params, inferred_update
        As :func:`update_rmse`; the true rule must be Markov (a history-dependent rule's drift field depends
        on its context).
    states : UpdateStates
        Only their weights are used (e.g. :func:`visited_states`).
    stimuli, sides : sequence of float
        The task's trials: signed stimuli in feature units and correct sides (:func:`task_stimuli`;
        :func:`~learnrules.models.neural_grid.trial_mix`).
    feature_names : sequence of str
        The K features (``bias``, ``stimulus``, ``stimulus_left``, ``stimulus_right``).
    """
    if not true_rule.markov:
        raise ValueError(f"the drift field of {true_rule.name} depends on its history: use update_rmse")
    k = states.weights.shape[1]
    if len(feature_names) != k:
        raise ValueError(f"{len(feature_names)} feature names for {k} weights")
    params = coerce_params(true_rule, true_params, k)
    mix = trial_mix(stimuli, feature_names, sides=sides)
    true = expected_update(true_rule, params, states.weights, *mix)

    def inferred(w: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        return torch.as_tensor(inferred_update(w, x, y, r)).to(w.dtype)

    return _error(true, expected_drift(inferred, states.weights, *mix))


def loglik_gap(oracle_loglik: np.ndarray, model_loglik: np.ndarray) -> float:
    """Return the mean per-trial log-likelihood of the oracle minus that of the model (nats/trial).

    Positive means the model predicts held-out choices worse than the true rule with its true parameters.
    Trials where either value is NaN (e.g. missing choices) are skipped.
    """
    a, b = np.asarray(oracle_loglik, dtype=float), np.asarray(model_loglik, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"log-likelihood arrays differ in shape: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    if not keep.any():
        raise ValueError("no trial has a finite log-likelihood in both arrays")
    return float((a[keep] - b[keep]).mean())
