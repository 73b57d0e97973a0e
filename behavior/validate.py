"""Checks on trial tables that raise a ``ValueError`` naming the column, the source row and the bad value.

Every function takes ``rows``, the 0-based row numbers in the caller's table of the values being checked,
so that messages point at the source even after rows were reordered or dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "bad_value",
    "require_columns",
    "numeric",
    "check_not_nan",
    "check_codes",
    "check_range",
    "check_integer",
    "check_finite",
    "check_keys",
]


def bad_value(column: str, row: int, value: object, problem: str) -> ValueError:
    """Return (not raise) the standard error for one bad cell."""
    if isinstance(value, np.generic):
        value = value.item()  # show 1.5, not np.float64(1.5)
    return ValueError(f"column {column!r}, row {row}: value {value!r} {problem}")


def require_columns(frame: pd.DataFrame, required: Iterable[str | tuple[str, ...]]) -> None:
    """Raise if a required column is absent; a tuple entry means "any one of these".

    The message lists what is missing and what is present.
    """
    present = [str(c) for c in frame.columns]
    missing = []
    for need in required:
        options = (need,) if isinstance(need, str) else need
        if not any(o in present for o in options):
            missing.append(" or ".join(repr(o) for o in options))
    if missing:
        raise ValueError(f"missing required column(s) {', '.join(missing)}; columns present: {present}")


def _is_missing(value: object) -> bool:
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def numeric(series: pd.Series, column: str, rows: np.ndarray) -> np.ndarray:
    """Convert a column to float64, with NaN for missing cells; raise on a cell that is not a number.

    Strings that spell numbers (``"1"``, ``"0.5"``) are accepted; booleans become 0/1.
    """
    if pd.api.types.is_bool_dtype(series.dtype) or (
        pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype)
    ):
        try:
            return series.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            pass  # exotic numeric-like dtype (e.g. timedelta): fall through to the per-cell check
    raw = series.to_numpy(dtype=object)
    out = np.full(len(raw), np.nan)
    for i, value in enumerate(raw):
        if _is_missing(value):
            continue
        if isinstance(value, complex | np.complexfloating):
            raise bad_value(column, int(rows[i]), value, "is not a real number")
        try:
            out[i] = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise bad_value(column, int(rows[i]), value, "is not a number") from None
    return out


def check_not_nan(values: np.ndarray, column: str, rows: np.ndarray) -> None:
    """Raise on the first missing (NaN) value."""
    bad = np.flatnonzero(np.isnan(values))
    if len(bad):
        raise bad_value(column, int(rows[bad[0]]), values[bad[0]], f"is missing ({len(bad)} missing in all)")


def check_codes(values: np.ndarray, column: str, rows: np.ndarray, allowed: Sequence[float], meaning: str) -> None:
    """Raise on the first non-NaN value outside ``allowed``; ``meaning`` explains the code set."""
    ok = np.isin(values, np.asarray(allowed, dtype=float)) | np.isnan(values)
    bad = np.flatnonzero(~ok)
    if len(bad):
        codes = sorted({float(a) for a in allowed})
        raise bad_value(column, int(rows[bad[0]]), values[bad[0]], f"is not one of the codes {codes} ({meaning})")


def check_range(values: np.ndarray, column: str, rows: np.ndarray, low: float, high: float) -> None:
    """Raise on the first non-NaN value outside ``[low, high]``."""
    bad = np.flatnonzero(~np.isnan(values) & ~((values >= low) & (values <= high)))
    if len(bad):
        raise bad_value(column, int(rows[bad[0]]), values[bad[0]], f"is outside [{low}, {high}]")


def check_integer(values: np.ndarray, column: str, rows: np.ndarray) -> None:
    """Raise on the first value that is not a whole number of magnitude below 2**53 (exact in float64)."""
    finite = np.isfinite(values) & (np.abs(np.nan_to_num(values)) < 2.0**53)
    bad = np.flatnonzero(~finite | (np.where(finite, values, 0.0) != np.round(np.where(finite, values, 0.0))))
    if len(bad):
        raise bad_value(column, int(rows[bad[0]]), values[bad[0]], "is not a whole number")


def check_finite(values: np.ndarray, column: str, rows: np.ndarray) -> None:
    """Raise on the first NaN or infinite value."""
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise bad_value(column, int(rows[bad[0]]), values[bad[0]], "is not a finite number")


def check_keys(subject: np.ndarray, session: np.ndarray, trial: np.ndarray, rows: np.ndarray,
               session_label: np.ndarray) -> None:
    """Raise on duplicate ``(subject, session, trial)`` keys or on trials that decrease within a session.

    The arrays must already be grouped by subject and sorted by session (stably, so file order is kept
    within a session). ``session_label`` holds the source's session values for the messages.
    """
    keys = pd.DataFrame({"subject": subject, "session": session, "trial": trial})
    dup = keys.duplicated(keep=False).to_numpy()
    if dup.any():
        first = np.flatnonzero(dup)[0]
        same = np.flatnonzero(dup & (subject == subject[first]) & (session == session[first])
                              & (trial == trial[first]))
        raise ValueError(
            f"columns 'subject', 'session', 'trial': duplicate key (subject={subject[first]!r}, "
            f"session={session_label[first]!r}, trial={int(trial[first])}) at rows "
            f"{sorted(int(rows[i]) for i in same)}")
    same_group = (subject[1:] == subject[:-1]) & (session[1:] == session[:-1])
    bad = np.flatnonzero(same_group & (trial[1:] <= trial[:-1]))
    if len(bad):
        i = bad[0] + 1
        raise ValueError(
            f"column 'trial', row {int(rows[i])}: value {int(trial[i])} comes after trial {int(trial[i - 1])} "
            f"(row {int(rows[i - 1])}) in subject {subject[i]!r}, session {session_label[i]!r}; trials must "
            "increase within a session in file order")
