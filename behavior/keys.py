"""Trial keys: subject names, session order and trial numbers, checked and put in order."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from learnrules.behavior.validate import bad_value, check_integer, check_keys, numeric

__all__ = ["order_trials"]

logger = logging.getLogger(__name__)


def _missing(raw: np.ndarray) -> np.ndarray:
    return np.array([pd.api.types.is_scalar(v) and bool(pd.isna(v)) for v in raw], dtype=bool)


def _subjects(table: Mapping[str, pd.Series], n: int, default: str) -> np.ndarray:
    if "subject" not in table:
        logger.info("load_trials: no 'subject' column; all %d rows are one animal named %r", n, default)
        return np.full(n, default, dtype=object)
    raw = table["subject"].to_numpy(dtype=object)
    bad = np.flatnonzero(_missing(raw))
    if len(bad):
        raise bad_value("subject", int(bad[0]), raw[bad[0]], "is missing")
    return np.array([str(v) for v in raw], dtype=object)


def _sessions(table: Mapping[str, pd.Series], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(sort code, label)`` per row: codes follow the sorted order of the session values."""
    if "session" not in table:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    series = table["session"]
    raw = series.to_numpy(dtype=object)
    bad = np.flatnonzero(_missing(raw))
    if len(bad):
        raise bad_value("session", int(bad[0]), raw[bad[0]], "is missing")
    numbers = series if pd.api.types.is_numeric_dtype(series.dtype) else None
    if numbers is None:
        try:  # strings that all spell numbers sort as numbers ("10" after "9")
            as_number = pd.to_numeric(series, errors="coerce")
            numbers = None if as_number.isna().any() else as_number
        except (TypeError, ValueError):
            numbers = None
    if numbers is not None:
        codes = np.unique(numbers.to_numpy(dtype=np.float64), return_inverse=True)[1]
        return codes.astype(np.int64), raw
    try:  # sorted() rather than pandas, which silently leaves mixed types unsorted
        ordered = sorted(pd.unique(raw))
    except TypeError as err:
        raise ValueError(f"column 'session': values cannot be sorted ({err}); use one type, e.g. numbers or "
                         f"ISO dates (first values {raw[:3].tolist()})") from None
    lookup = {value: code for code, value in enumerate(ordered)}
    codes = np.array([lookup[value] for value in raw], dtype=np.int64)
    return codes.astype(np.int64), raw


def order_trials(table: Mapping[str, pd.Series], default_subject: str) -> pd.DataFrame:
    """Validate the keys and return them in trial order.

    Parameters
    ----------
    table : Mapping[str, pandas.Series]
        Canonical columns; ``subject``, ``session`` and ``trial`` are each optional.
    default_subject : str
        Subject name when there is no ``subject`` column.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject`` (str), ``session`` (int sort code, in session order), ``session_label``,
        ``trial`` (int) and ``row`` (0-based source row), grouped by subject in order of first appearance,
        sessions sorted, and file order kept within a session.
    """
    n = len(table["choice"])
    rows = np.arange(n)
    subject = _subjects(table, n, default_subject)
    session, label = _sessions(table, n)
    subject_order = pd.factorize(subject)[0]  # order of first appearance
    order = np.lexsort((rows, session, subject_order))
    subject, session, label, rows = subject[order], session[order], label[order], rows[order]
    if "trial" in table:
        trial_values = numeric(table["trial"], "trial", np.arange(n))[order]
        check_integer(trial_values, "trial", rows)
        trial = trial_values.astype(np.int64)
    else:
        groups = pd.DataFrame({"subject": subject, "session": session})
        trial = groups.groupby(["subject", "session"], sort=False).cumcount().to_numpy(dtype=np.int64)
    check_keys(subject, session, trial, rows, label)
    return pd.DataFrame({"subject": subject, "session": session, "session_label": label, "trial": trial,
                         "row": rows})
