"""Shared by the bench scripts: the common setup, a DataFrame as a GitHub markdown table (no tabulate), a report."""

import logging
from pathlib import Path

import pandas as pd
import torch


def setup(*, log_level: int | None = logging.INFO) -> None:
    """Float64 (as the tests), one thread (tiny per-trial ops on a shared 2-core machine), timestamped logs.

    ``log_level=None`` leaves logging as it is (scripts that print only their tables).
    """
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    if log_level is not None:
        logging.basicConfig(level=log_level, format="%(asctime)s %(name)s %(message)s")


def markdown(frame: pd.DataFrame, *, index: bool = False, digits: int = 4) -> str:
    """Return ``frame`` as a markdown table; floats with ``digits`` significant digits."""
    def cell(v):
        return f"{v:.{digits}g}" if isinstance(v, float) else str(v)
    columns = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
    rows = [([str(i)] if index else []) + [cell(v) for v in row]
            for i, row in zip(frame.index, frame.values.tolist(), strict=True)]
    head = "| " + " | ".join(columns) + " |"
    return "\n".join([head, "|" + "---|" * len(columns), *("| " + " | ".join(r) + " |" for r in rows)])


def write_report(stem: Path, title: str, summary: str, notes: list[str], table: pd.DataFrame,
                 *sections: pd.DataFrame | str) -> None:
    """Write ``table`` to ``<stem>.csv`` and a report to ``<stem>.md``.

    The report: ``# title``, the one-line ``summary``, ``notes`` as a list, then ``table`` and ``sections``
    (DataFrames as markdown tables, 6 significant digits; strings as they are), blank lines between.
    """
    stem.parent.mkdir(exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    parts = [f"# {title}", "", summary, "", *(f"- {n}" for n in notes)]
    for section in (table, *sections):
        parts += ["", markdown(section, digits=6) if isinstance(section, pd.DataFrame) else section]
    stem.with_suffix(".md").write_text("\n".join([*parts, ""]))
