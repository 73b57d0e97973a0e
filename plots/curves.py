"""Learning curves and psychometric curves (real vs twins), and the model-comparison bar chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from learnrules.inference.twin import accuracy_by_session, psychometric
from learnrules.plots._common import finish, new_figure

__all__ = ["plot_learning_curves", "plot_psychometric", "plot_comparison"]


def _as_list(simulated: pd.DataFrame | Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    return [simulated] if isinstance(simulated, pd.DataFrame) else list(simulated)


def _mean_curve(curve: pd.DataFrame, x: str, y: str) -> pd.Series:
    return curve.groupby(x)[y].mean()


def _real_and_twins(ax: object, real: pd.Series, twins: list[pd.Series], xlabel: str, ylabel: str) -> None:
    """Draw each twin as a thin line, the twins' 5-95% band and the real curve on top."""
    for i, twin in enumerate(twins):
        ax.plot(twin.index, twin.to_numpy(), color="C1", alpha=0.35, linewidth=0.8,
                label="twins" if i == 0 else None)
    if len(twins) > 1:
        wide = pd.concat(twins, axis=1)
        ax.fill_between(wide.index.to_numpy(float), wide.quantile(0.05, axis=1).to_numpy(float),
                        wide.quantile(0.95, axis=1).to_numpy(float), color="C1", alpha=0.2, linewidth=0)
    ax.plot(real.index, real.to_numpy(), "o-", color="k", label="real", markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")


def plot_learning_curves(real_table: pd.DataFrame, simulated_tables: pd.DataFrame | Sequence[pd.DataFrame], *,
                         subject: str | None = None, path: str | Path | None = None) -> Figure:
    """Plot accuracy per session of the real animals against their simulated twins.

    Parameters
    ----------
    real_table : pandas.DataFrame
        Canonical trial table of the real animals.
    simulated_tables : DataFrame or sequence of DataFrame
        Twin tables (:func:`learnrules.inference.twin.simulate_twin`), e.g. one per seed.
    subject : str, optional
        Plot one animal (default: the mean over animals at each session position).
    path : str or Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: the real curve (black), one line per twin table, and the twins' 5-95% band.
    """
    def curve(table: pd.DataFrame) -> pd.Series:
        t = table if subject is None else table[table["subject"] == subject]
        if t.empty:
            raise ValueError(f"no trials for subject {subject!r}")
        return _mean_curve(accuracy_by_session(t), "session_index", "accuracy")

    fig, axes = new_figure(1, 1, width=5.0, height=3.2)
    _real_and_twins(axes[0, 0], curve(real_table), [curve(t) for t in _as_list(simulated_tables)],
                    "session", "fraction rewarded")
    axes[0, 0].set_ylim(0.3, 1.0)
    axes[0, 0].xaxis.set_major_locator(MaxNLocator(integer=True))  # sessions are counted, not measured
    axes[0, 0].set_title("learning curve" + (f" of {subject}" if subject else ""))
    return finish(fig, path)


def plot_psychometric(real_table: pd.DataFrame, simulated_tables: pd.DataFrame | Sequence[pd.DataFrame] = (), *,
                      sessions: Mapping[str, slice] | None = None, path: str | Path | None = None) -> Figure:
    """Plot psychometric curves (fraction right per signed contrast), real vs twins, per group of sessions.

    Parameters
    ----------
    real_table : pandas.DataFrame
        Canonical trial table of the real animals.
    simulated_tables : DataFrame or sequence of DataFrame
        Twin tables (may be empty).
    sessions : Mapping[str, slice], optional
        Panel title -> each animal's sessions by position (default: ``{"early": slice(0, 1),
        "late": slice(-1, None)}``).
    path : str or Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per entry of ``sessions``.
    """
    groups = sessions if sessions is not None else {"early": slice(0, 1), "late": slice(-1, None)}
    twins = _as_list(simulated_tables)
    fig, axes = new_figure(1, len(groups), width=3.6, height=3.2, sharey=True)
    for ax, (title, which) in zip(axes[0], groups.items(), strict=True):
        def curve(table: pd.DataFrame, which: slice = which) -> pd.Series:
            return psychometric(table, sessions=which).set_index("signed_contrast")["p_right"]

        _real_and_twins(ax, curve(real_table), [curve(t) for t in twins], "signed contrast", "P(right)")
        ax.set_title(f"{title} sessions")
        ax.set_ylim(-0.02, 1.02)
    return finish(fig, path)


def plot_comparison(compare_table: pd.DataFrame, *, metric: str = "nats_per_trial",
                    path: str | Path | None = None) -> Figure:
    """Bar chart of held-out scores per rule with standard-error bars, best rule first.

    Parameters
    ----------
    compare_table : pandas.DataFrame
        Output of :func:`learnrules.inference.evaluation.crossval.compare_table`.
    metric : {"nats_per_trial", "bits_per_trial", "accuracy"}
        Column to plot; its error bar is ``se``, ``bits_se`` or ``accuracy_se``.
    path : str or Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
        One axes, one bar per rule, tick labels = rule names.
    """
    errors = {"nats_per_trial": "se", "bits_per_trial": "bits_se", "accuracy": "accuracy_se"}
    if metric not in errors:
        raise ValueError(f"metric must be one of {sorted(errors)}, got {metric!r}")
    table = compare_table.sort_values("rank") if "rank" in compare_table else compare_table
    values, err = table[metric].to_numpy(float), table[errors[metric]].to_numpy(float)
    fig, axes = new_figure(1, 1, width=max(4.2, 0.9 * len(table) + 1.5), height=3.4)
    ax = axes[0, 0]
    colors = ["C2" if i == 0 else "C0" for i in range(len(table))]
    ax.bar(np.arange(len(table)), values, yerr=err, color=colors, capsize=4)
    ax.set_xticks(np.arange(len(table)), table["rule"].astype(str).tolist(), rotation=30, ha="right")
    ax.set_ylabel(metric.replace("_", " "))
    bar = np.nan_to_num(err, nan=0.0)  # no SE (one animal, one fold): limits from the values alone
    low, high = np.nanmin(values - bar), np.nanmax(values + bar)
    pad = 0.15 * (high - low) if high > low else 0.05
    ax.set_ylim(low - pad, min(high + pad, 0.0) if metric != "accuracy" else high + pad)
    across = str(table["se_across"].iloc[0]) if "se_across" in table else "animals"
    ax.set_title(f"held-out score (mean ± SE across {across})", fontsize="medium")
    return finish(fig, path)
