"""Figure creation and saving shared by the plot functions (no pyplot: no global figure state)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["new_figure", "finish"]


def new_figure(n_rows: int, n_cols: int, *, width: float = 4.0, height: float = 2.6, **kwargs: object
               ) -> tuple[Figure, object]:
    """Return a pyplot-free figure and its ``(n_rows, n_cols)`` array of axes (``squeeze=False``)."""
    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **kwargs)
    return fig, axes


def finish(fig: Figure, path: str | Path | None) -> Figure:
    """Save the figure to ``path`` when given (format from the suffix, e.g. ``.png``, ``.pdf``); return it."""
    if path is not None:
        fig.savefig(Path(path))
    return fig
