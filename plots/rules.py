"""The learned rule as heat maps of the weight update over (stimulus, weight), per choice and reward."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from learnrules.models.rule import LearningRule
from learnrules.plots._common import finish, new_figure

__all__ = ["rule_update_table", "plot_rule_map", "SIGNED_CONTRASTS"]

SIGNED_CONTRASTS = (-1.0, -0.5, -0.25, -0.125, -0.0625, 0.0, 0.0625, 0.125, 0.25, 0.5, 1.0)
_PANELS = ((0, 1, "left, rewarded"), (0, 0, "left, unrewarded"), (1, 1, "right, rewarded"),
           (1, 0, "right, unrewarded"))


def _grid_x(stimulus: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Design rows for signed stimuli: bias 1, stimulus s, stimulus_right/left the positive/negative part."""
    columns = {"bias": np.ones_like(stimulus), "stimulus": stimulus,
               "stimulus_right": np.maximum(stimulus, 0.0), "stimulus_left": np.maximum(-stimulus, 0.0)}
    return np.stack([columns.get(n, np.zeros_like(stimulus)) for n in names], axis=1)


def rule_update_table(rule: LearningRule, params: Mapping[str, object], feature_names: Sequence[str], *,
                      weights_grid: Mapping[str, Sequence[float]] | None = None,
                      stimulus_grid: Sequence[float] = SIGNED_CONTRASTS) -> pd.DataFrame:
    """Evaluate a rule's update on a grid of weights, signed stimuli, choices and rewards.

    Parameters
    ----------
    rule : LearningRule
        Any rule (its initial context is used for history-dependent rules).
    params : Mapping[str, array-like]
        Its parameters.
    feature_names : sequence of str
        The K features; ``bias`` is 1, ``stimulus`` the signed stimulus, ``stimulus_right`` / ``stimulus_left``
        its positive / negative part, any other feature 0.
    weights_grid : Mapping[str, sequence of float], optional
        Values of each weight; the grid is their product and unnamed weights are 0 (default: 13 values in
        [-3, 3] for every weight).
    stimulus_grid : sequence of float
        Signed stimulus values.

    Returns
    -------
    pandas.DataFrame
        Columns ``w_<feature>`` (one per feature), ``stimulus, choice, reward, feature, dw``: one row per grid
        point and updated weight (the layout of ``learnrules.models.neural_grid.rule_update_grid``).
    """
    names = list(feature_names)
    grid = weights_grid if weights_grid is not None else {n: np.linspace(-3.0, 3.0, 13) for n in names}
    axes = [np.asarray(grid.get(n, [0.0]), dtype=float) for n in names]
    rows = np.array(list(itertools.product(*axes, stimulus_grid, (0.0, 1.0), (0.0, 1.0))), dtype=float)
    k, dtype = len(names), torch.get_default_dtype()
    w, s, y, r = rows[:, :k], rows[:, k], rows[:, k + 1], rows[:, k + 2]
    prm = {n: torch.as_tensor(np.asarray(v, dtype=float), dtype=dtype) for n, v in params.items()}
    context = rule.init_context(prm, (len(rows),), k).to(dtype)
    with torch.no_grad():
        dw = rule.drift(prm, torch.as_tensor(w, dtype=dtype), torch.as_tensor(_grid_x(s, names), dtype=dtype),
                        torch.as_tensor(y, dtype=dtype), torch.as_tensor(r, dtype=dtype), context).numpy()
    base = pd.DataFrame({**{f"w_{n}": w[:, i] for i, n in enumerate(names)}, "stimulus": s, "choice": y,
                         "reward": r})
    return pd.concat([base.assign(feature=n, dw=dw[:, i]) for i, n in enumerate(names)], ignore_index=True)


def _slice(table: pd.DataFrame, feature: str) -> pd.DataFrame:
    """Rows updating ``feature``; other weights held at their grid value nearest 0."""
    out = table[table["feature"] == feature]
    for col in [c for c in table if c.startswith("w_") and c != f"w_{feature}"]:
        values = out[col].unique()
        out = out[out[col] == values[np.argmin(np.abs(values))]]
    return out


def _panel(ax: object, frame: pd.DataFrame, feature: str, norm: TwoSlopeNorm) -> object:
    wide = frame.pivot_table(index=f"w_{feature}", columns="stimulus", values="dw", aggfunc="mean")
    return ax.pcolormesh(wide.columns.to_numpy(float), wide.index.to_numpy(float), wide.to_numpy(float),
                         shading="nearest", cmap="RdBu_r", norm=norm)


def plot_rule_map(update_table: pd.DataFrame, *, true_update_table: pd.DataFrame | None = None,
                  features: Sequence[str] | None = None, path: str | Path | None = None) -> Figure:
    """Plot the weight update as heat maps over (signed stimulus, current weight).

    Parameters
    ----------
    update_table : pandas.DataFrame
        Columns ``w_<feature>``, ``stimulus, choice, reward, feature, dw`` (:func:`rule_update_table`, or a
        neural rule's ``rule_update_grid``). Other weights are held at their grid value nearest 0.
    true_update_table : pandas.DataFrame, optional
        The same for the true rule, plotted in the row below each fitted row on the same color scale.
    features : sequence of str, optional
        Weights whose update to show (default: all in the table).
    path : str or Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
        Four columns (left/right choice x rewarded/unrewarded), one row per feature (two with the truth),
        one shared colorbar centred on 0 and symmetric.
    """
    needed = {"stimulus", "choice", "reward", "feature", "dw"}
    for name, table in [("update_table", update_table), ("true_update_table", true_update_table)]:
        if table is not None and not needed <= set(table):
            raise ValueError(f"{name} lacks columns {sorted(needed - set(table))}")
    names = list(dict.fromkeys(update_table["feature"])) if features is None else list(features)
    tables = [("fitted", update_table)] + ([("true", true_update_table)] if true_update_table is not None else [])
    slices = [(label, n, _slice(t, n)) for n in names for label, t in tables]
    vmax = max(float(np.abs(s["dw"]).max()) for *_, s in slices) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    fig, axes = new_figure(len(slices), len(_PANELS), width=2.6, height=2.2, sharex=True)
    mesh = None
    for row, (label, name, frame) in enumerate(slices):
        for col, (choice, reward, title) in enumerate(_PANELS):
            ax = axes[row, col]
            mesh = _panel(ax, frame[(frame["choice"] == choice) & (frame["reward"] == reward)], name, norm)
            ax.set_title(title if row == 0 else "", fontsize="small")
            ax.set_ylabel(f"{label}: w_{name}" if col == 0 else "")
        axes[row, 0].set_ylabel(f"{label}\nw_{name}")
    for ax in axes[-1]:
        ax.set_xlabel("stimulus")
    fig.colorbar(mesh, ax=axes, label="weight update dw", shrink=0.8)
    return finish(fig, path)
