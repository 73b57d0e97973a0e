"""Shared by the bench scripts: render a DataFrame as a GitHub markdown table (no tabulate dependency)."""

import pandas as pd


def markdown(frame: pd.DataFrame, *, index: bool = False, digits: int = 4) -> str:
    """Return ``frame`` as a markdown table; floats with ``digits`` significant digits."""
    def cell(v):
        return f"{v:.{digits}g}" if isinstance(v, float) else str(v)
    columns = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
    rows = [([str(i)] if index else []) + [cell(v) for v in row]
            for i, row in zip(frame.index, frame.values.tolist(), strict=True)]
    head = "| " + " | ".join(columns) + " |"
    return "\n".join([head, "|" + "---|" * len(columns), *("| " + " | ".join(r) + " |" for r in rows)])
