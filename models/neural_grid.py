"""Read a learned rule: its update on a grid of (weights, stimulus, choice, reward), as a tidy DataFrame.

Works for any :class:`~learnrules.models.rule.LearningRule` (neural or parametric). For a history-dependent
rule (GRU), the update is conditioned on a context: pass one, or a ``reward_rate`` from which
:func:`history_context` builds the context by running the rule over a short synthetic history.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from learnrules.models.rule import LearningRule, Params

__all__ = ["rule_update_grid", "history_context", "grid_features"]


def grid_features(stimulus: np.ndarray, feature_names: Sequence[str],
                  fixed: Mapping[str, float] | None = None) -> np.ndarray:
    """Return design rows for signed stimuli, shape ``(len(stimulus), K)``.

    ``bias`` is 1, ``stimulus`` the signed stimulus, ``stimulus_left``/``stimulus_right`` its negative/positive
    part; any other feature takes its value from ``fixed`` (default 0).
    """
    fixed = dict(fixed or {})
    s = np.asarray(stimulus, dtype=float)
    columns = []
    for name in feature_names:
        if name in fixed:
            columns.append(np.full_like(s, float(fixed[name])))
        elif name == "bias":
            columns.append(np.ones_like(s))
        elif name == "stimulus":
            columns.append(s)
        elif name == "stimulus_left":
            columns.append(np.maximum(-s, 0.0))
        elif name == "stimulus_right":
            columns.append(np.maximum(s, 0.0))
        else:
            columns.append(np.zeros_like(s))
    return np.stack(columns, axis=-1)


def history_context(rule: LearningRule, params: Params, feature_names: Sequence[str], *, reward_rate: float,
                    n_trials: int = 20, stimulus: float = 0.5) -> Tensor:
    """Return the rule's context after a synthetic history with a given reward rate, shape ``(C,)``.

    The history alternates the stimulus side (``+stimulus``, ``-stimulus``); the rewarded trials, spread
    evenly (``round(reward_rate * n_trials)`` of them, the last trial rewarded when any is), chose the correct
    side and the others the wrong side. Deterministic.
    """
    if not 0.0 <= reward_rate <= 1.0:
        raise ValueError(f"reward_rate must be in [0, 1], got {reward_rate}")
    n_rewarded = int(round(reward_rate * n_trials))
    # Evenly spread rewards, ending with the most recent trials: r_t = floor((t+1) q) - floor(t q).
    steps = np.floor(np.arange(1, n_trials + 1) * n_rewarded / n_trials)
    rewards = np.diff(np.concatenate([[0.0], steps]))
    signs = np.where(np.arange(n_trials) % 2 == 0, 1.0, -1.0)
    correct = (signs > 0).astype(float)
    choices = np.where(rewards > 0, correct, 1.0 - correct)
    dtype = torch.get_default_dtype()
    x = torch.as_tensor(grid_features(signs * stimulus, feature_names), dtype=dtype)
    with torch.no_grad():
        out = rule.contexts(params, x, torch.as_tensor(choices, dtype=dtype), torch.as_tensor(rewards, dtype=dtype))
    return out[-1] if n_trials > 0 else rule.init_context(params, (), len(feature_names))


def rule_update_grid(rule: LearningRule, params: Params, *, weights_grid: Mapping[str, Sequence[float]],
                     stimulus_grid: Sequence[float], feature_names: Sequence[str],
                     choices: Sequence[int] = (0, 1), rewards: Sequence[int] = (0, 1),
                     context: Tensor | None = None, reward_rate: float | None = None,
                     fixed_features: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Evaluate the rule's update on a grid; one row per grid point and weight.

    Parameters
    ----------
    rule : LearningRule
        The rule (neural or parametric).
    params : Mapping[str, Tensor]
        Rule parameters (empty for neural rules).
    weights_grid : Mapping[str, Sequence[float]]
        Grid values of the current weights by feature name; the grid is their Cartesian product, and a
        weight not named is held at 0.
    stimulus_grid : Sequence[float]
        Signed stimulus values (see :func:`grid_features` for how features are built from them).
    feature_names : Sequence[str]
        The K feature names, in the rule's order.
    choices, rewards : Sequence[int]
        Choices (1 = right) and rewards (1 = rewarded) to evaluate.
    context : Tensor, optional
        Context ``(C,)`` to condition on (history-dependent rules). Default: the rule's initial context, or
        :func:`history_context` when ``reward_rate`` is given.
    reward_rate : float, optional
        Condition a history-dependent rule on a recent history with this reward rate.
    fixed_features : Mapping[str, float], optional
        Values of features other than bias and stimulus (default 0).

    Returns
    -------
    pandas.DataFrame
        Columns ``w_<name>`` for each feature, ``stimulus``, ``choice``, ``reward``, ``feature`` (the weight
        updated) and ``dw`` (its update); plus ``reward_rate`` when given.
    """
    names = list(feature_names)
    unknown = sorted(set(weights_grid) - set(names))
    if unknown:
        raise ValueError(f"weights_grid names {unknown} are not among feature_names {names}")
    k = len(names)
    axes = [np.asarray(weights_grid.get(name, [0.0]), dtype=float) for name in names]
    stim = np.asarray(stimulus_grid, dtype=float)
    rows = np.array(list(itertools.product(*axes, stim, choices, rewards)), dtype=float)
    w, s, y, r = rows[:, :k], rows[:, k], rows[:, k + 1], rows[:, k + 2]
    x = grid_features(s, names, fixed_features)
    if context is None:
        if reward_rate is not None:
            context = history_context(rule, params, names, reward_rate=reward_rate)
        else:
            context = rule.init_context(params, (), k)
    dtype = torch.get_default_dtype()
    as_t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    ctx = context.to(dtype).expand(len(rows), context.shape[-1])
    with torch.no_grad():
        dw = rule.drift(params, as_t(w), as_t(x), as_t(y), as_t(r), ctx).cpu().numpy()
    base = pd.DataFrame({f"w_{name}": w[:, i] for i, name in enumerate(names)})
    base["stimulus"], base["choice"], base["reward"] = s, y.astype(int), r.astype(int)
    if reward_rate is not None:
        base["reward_rate"] = float(reward_rate)
    frames = [base.assign(feature=name, dw=dw[:, i]) for i, name in enumerate(names)]
    return pd.concat(frames, ignore_index=True)
