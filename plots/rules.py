"""The learned rule as heat maps: the update over (stimulus, weight) per choice and reward, and the drift field.

The drift field (:func:`~learnrules.models.neural_grid.rule_drift_grid`) is the update expected at each
weight state over the task's trials and the animal's choices: the part of a rule that choices identify
best, and what moves the weights on average.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from learnrules.models.neural_grid import rule_update_grid
from learnrules.models.rule import LearningRule, as_params
from learnrules.plots._common import finish, new_figure

__all__ = ["rule_update_table", "plot_rule_map", "plot_drift_field", "SIGNED_CONTRASTS"]

SIGNED_CONTRASTS = (-1.0, -0.5, -0.25, -0.125, -0.0625, 0.0, 0.0625, 0.125, 0.25, 0.5, 1.0)
_PANELS = ((0, 1, "left, rewarded"), (0, 0, "left, unrewarded"), (1, 1, "right, rewarded"),
           (1, 0, "right, unrewarded"))


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
    return rule_update_grid(rule, as_params(params), weights_grid=grid, stimulus_grid=stimulus_grid,
                            feature_names=names)


def _slice(table: pd.DataFrame, feature: str, shown: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows updating ``feature``; weights other than ``shown`` (default: ``feature``'s) at their value nearest 0."""
    shown = [f"w_{feature}"] if shown is None else [f"w_{n}" for n in shown]
    out = table[table["feature"] == feature]
    for col in [c for c in table if c.startswith("w_") and c not in shown]:
        values = out[col].unique()
        out = out[out[col] == values[np.argmin(np.abs(values))]]
    return out


def _panel(ax: object, frame: pd.DataFrame, feature: str, norm: TwoSlopeNorm) -> object:
    wide = frame.pivot_table(index=f"w_{feature}", columns="stimulus", values="dw", aggfunc="mean")
    return ax.pcolormesh(wide.columns.to_numpy(float), wide.index.to_numpy(float), wide.to_numpy(float),
                         shading="nearest", cmap="RdBu_r", norm=norm)


def plot_rule_map(update_table: pd.DataFrame, *, true_update_table: pd.DataFrame | None = None,
                  features: Sequence[str] | None = None, label: str = "fitted",
                  path: str | Path | None = None) -> Figure:
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
    label : str
        Row label of ``update_table`` (e.g. "network" for the network part of a hybrid rule).
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
    tables = [(label, update_table)] + ([("true", true_update_table)] if true_update_table is not None else [])
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


def plot_drift_field(drift_table: pd.DataFrame, *, true_drift_table: pd.DataFrame | None = None,
                     axes_features: Sequence[str] | None = None, path: str | Path | None = None) -> Figure:
    """Plot the drift field: the expected update of each weight over a plane of two weights.

    Parameters
    ----------
    drift_table : pandas.DataFrame
        Columns ``w_<feature>`` (one per weight), ``feature`` and ``dw``
        (:func:`~learnrules.models.neural_grid.rule_drift_grid`).
    true_drift_table : pandas.DataFrame, optional
        The same for the true rule, in a second column on the same color scale.
    axes_features : sequence of two str, optional
        The weights on the x and y axes (default: the first two of the table). Other weights are held at
        their grid value nearest 0. A table of one weight is drawn as lines of ``dw`` against it.
    path : str or Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
        One row per updated weight, a column for the fitted field (and one for the true field), one shared
        colorbar centred on 0 and symmetric (two or more weights).
    """
    for name, table in [("drift_table", drift_table), ("true_drift_table", true_drift_table)]:
        if table is not None and not {"feature", "dw"} <= set(table):
            raise ValueError(f"{name} lacks columns {sorted({'feature', 'dw'} - set(table))}")
    weights = [c[2:] for c in drift_table if c.startswith("w_")]
    shown = list(axes_features) if axes_features is not None else weights[:2]
    if not set(shown) <= set(weights) or len(shown) != min(2, len(weights)):
        raise ValueError(f"axes_features must be {min(2, len(weights))} of the table's weights {weights}, "
                         f"got {shown}")
    names = list(dict.fromkeys(drift_table["feature"]))
    tables = [("fitted", drift_table)] + ([("true", true_drift_table)] if true_drift_table is not None else [])
    fig, axes = new_figure(len(names), len(tables), width=3.4, height=2.8, sharex=True, sharey=True)
    frames = {(row, col): _slice(t, n, shown) for row, n in enumerate(names) for col, (_, t) in enumerate(tables)}
    vmax = max(float(np.abs(f["dw"]).max()) for f in frames.values()) or 1.0
    norm, mesh = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax), None
    for (row, col), frame in frames.items():
        ax = axes[row, col]
        if len(shown) == 1:
            line = frame.sort_values(f"w_{shown[0]}")
            ax.plot(line[f"w_{shown[0]}"], line["dw"])
            ax.axhline(0.0, color="0.6", lw=0.8)
        else:
            wide = frame.pivot_table(index=f"w_{shown[1]}", columns=f"w_{shown[0]}", values="dw", aggfunc="mean")
            mesh = ax.pcolormesh(wide.columns.to_numpy(float), wide.index.to_numpy(float), wide.to_numpy(float),
                                 shading="nearest", cmap="RdBu_r", norm=norm)
            ax.set_ylabel(f"w_{shown[1]}" if col == 0 else "")
        ax.set_title(f"{tables[col][0]}: expected dw_{names[row]}", fontsize="small")
    for ax in axes[-1]:
        ax.set_xlabel(f"w_{shown[0]}")
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, label="expected weight update", shrink=0.8)
    return finish(fig, path)
