"""Weight trajectories with credible bands and session boundaries, and the ELBO trace."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from learnrules.plots._common import finish, new_figure

__all__ = ["plot_weights", "plot_elbo"]

_REQUIRED = ("subject", "trial", "feature", "mean")


def _subject_frame(table: pd.DataFrame, subject: str | None) -> tuple[str, pd.DataFrame]:
    missing = [c for c in _REQUIRED if c not in table]
    if missing:
        raise ValueError(f"weights table lacks columns {missing}; it has {list(table)}")
    subject = str(table["subject"].iloc[0]) if subject is None else subject
    frame = table[table["subject"] == subject]
    if frame.empty:
        raise ValueError(f"no subject {subject!r} in the weights table")
    return subject, frame.sort_values("trial")


def _session_starts(frame: pd.DataFrame) -> np.ndarray:
    """Trials that open a session (except the first), from the ``session`` column."""
    if "session" not in frame:
        return np.zeros(0)
    per_trial = frame.drop_duplicates("trial")
    session, trial = per_trial["session"].to_numpy(), per_trial["trial"].to_numpy()
    return trial[1:][session[1:] != session[:-1]]


def plot_weights(weights_table: pd.DataFrame, *, subject: str | None = None,
                 features: Sequence[str] | None = None, true_weights: np.ndarray | None = None,
                 true_label: str = "true", path: str | Path | None = None) -> Figure:
    """Plot one animal's weight trajectories with credible bands and session boundaries.

    Parameters
    ----------
    weights_table : pandas.DataFrame
        Tidy weights with columns ``subject, trial, feature, mean`` and optionally ``lower, upper`` (the band)
        and ``session`` (dotted vertical lines where a session opens), e.g. ``FitResult.weights``.
    subject : str, optional
        Animal to plot (default: the first in the table).
    features : sequence of str, optional
        Features to plot, one panel each (default: all, in table order).
    true_weights : ndarray, shape (T, len(features)), optional
        Ground truth to overlay (dashed), columns in ``features`` order, rows indexed by trial.
    true_label : str
        Legend label of the overlay (e.g. ``"psytrack"`` when it is another method's estimate).
    path : str or Path, optional
        Save the figure there (PNG, PDF, ... by suffix).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per feature, sharing the trial axis; each y label is the feature name.
    """
    subject, frame = _subject_frame(weights_table, subject)
    names = list(dict.fromkeys(frame["feature"])) if features is None else list(features)
    if true_weights is not None and np.shape(true_weights)[-1] != len(names):
        raise ValueError(f"true_weights has {np.shape(true_weights)[-1]} columns, expected {len(names)}")
    fig, axes = new_figure(len(names), 1, width=8.0, height=2.2, sharex=True)
    starts = _session_starts(frame)
    for i, name in enumerate(names):
        ax, f = axes[i, 0], frame[frame["feature"] == name]
        if f.empty:
            raise ValueError(f"feature {name!r} not in the weights table for subject {subject!r}")
        trial = f["trial"].to_numpy()
        if {"lower", "upper"} <= set(f):
            ax.fill_between(trial, f["lower"].to_numpy(float), f["upper"].to_numpy(float), alpha=0.3,
                            color="C0", linewidth=0, label="credible band")
        ax.plot(trial, f["mean"].to_numpy(float), color="C0", label="posterior mean")
        if true_weights is not None:
            truth = np.asarray(true_weights, dtype=float)[:, i]
            ax.plot(np.arange(len(truth)), truth, "--", color="k", linewidth=1.0, label=true_label)
        if len(starts):
            ax.vlines(starts, 0, 1, transform=ax.get_xaxis_transform(), colors="0.6", linestyles=":",
                      linewidth=0.8)
        ax.axhline(0.0, color="0.8", linewidth=0.6)
        ax.set_ylabel(name)
    axes[0, 0].set_title(f"weights of {subject}")
    axes[0, 0].legend(loc="upper left", fontsize="small")
    axes[-1, 0].set_xlabel("trial")
    return finish(fig, path)


def plot_elbo(trace: Sequence[float] | np.ndarray, *, path: str | Path | None = None) -> Figure:
    """Plot the ELBO trace of a fit (e.g. ``FitResult.elbo_trace``) against the optimization step.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one line.
    """
    values = np.asarray(trace, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"trace must be a non-empty 1-D sequence, got shape {values.shape}")
    fig, axes = new_figure(1, 1, width=5.0, height=3.0)
    ax = axes[0, 0]
    ax.plot(np.arange(1, len(values) + 1), values, marker="." if len(values) < 50 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("ELBO")
    ax.set_title(f"final ELBO {values[-1]:.6g}")
    return finish(fig, path)
