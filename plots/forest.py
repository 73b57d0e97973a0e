"""Forest plot of per-animal rule parameters (hierarchical or independent pooling) with the population band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from learnrules.plots._common import finish, new_figure

__all__ = ["plot_forest"]


def plot_forest(animal_table: pd.DataFrame, population_table: pd.DataFrame | None = None, *,
                path: str | Path | None = None) -> Figure:
    """Plot each animal's parameter estimate and interval, its unpooled estimate, and the population band.

    Parameters
    ----------
    animal_table : pandas.DataFrame
        ``FitResult.animal_table`` (subject, parameter, feature, mean, lower, upper, unpooled).
    population_table : pandas.DataFrame, optional
        ``FitResult.population_table``: its ``median`` row is drawn as a line, with a band of the median times
        ``exp(+- sd)`` (the middle 68% of the animals for a positive rate; for other constraints a guide only).
    path : str or Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per parameter entry; animals on the vertical axis. The step from an open circle (the
        animal's own data) to its filled dot (partially pooled) is the shrinkage.
    """
    if animal_table.empty:
        raise ValueError("animal_table is empty: the fit has no per-animal parameters (pooling='shared')")
    entries = list(dict.fromkeys(zip(animal_table["parameter"], animal_table["feature"].fillna(""), strict=True)))
    subjects = list(dict.fromkeys(animal_table["subject"]))
    fig, axes = new_figure(1, len(entries), width=3.2, height=0.25 * len(subjects) + 1.2, sharey=True)
    y = np.arange(len(subjects))
    for ax, (name, feature) in zip(axes[0], entries, strict=True):
        rows = animal_table[(animal_table["parameter"] == name) & (animal_table["feature"].fillna("") == feature)]
        rows = rows.set_index("subject").loc[subjects]
        ax.errorbar(rows["mean"], y, xerr=[rows["mean"] - rows["lower"], rows["upper"] - rows["mean"]], fmt="o",
                    color="C0", ms=4, lw=1, label="pooled")
        ax.plot(rows["unpooled"], y, "o", mfc="none", color="C1", ms=5, label="own data")
        if population_table is not None and not population_table.empty:
            pop = population_table[(population_table["parameter"] == name)
                                   & (population_table["feature"].fillna("") == feature)]
            median = pop[pop["quantity"] == "median"]["mean"].to_numpy()
            spread = pop[pop["quantity"] == "sd"]["mean"].to_numpy()
            for i, value in enumerate(median):
                ax.axvline(value, color="0.3", lw=1, ls="-" if i == 0 else "--")
            if len(median) and len(spread):
                ax.axvspan(median[0] * np.exp(-spread[0]), median[0] * np.exp(spread[0]), color="0.85", zorder=0)
        ax.set_title(f"{name}[{feature}]" if feature else name)
    axes[0, 0].set_yticks(y, subjects)
    axes[0, 0].invert_yaxis()
    axes[0, 0].legend(loc="best", fontsize="small")
    return finish(fig, path)
