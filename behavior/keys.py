"""Trial keys: subject names, session order and trial numbers, checked and put in order."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from learnrules.behavior.validate import bad_value, check_integer, check_keys, numeric

__all__ = ["order_trials", "subject_labels", "SessionOrder"]

logger = logging.getLogger(__name__)


def _missing(raw: np.ndarray) -> np.ndarray:
    return np.array([pd.api.types.is_scalar(v) and bool(pd.isna(v)) for v in raw], dtype=bool)


def subject_labels(table: Mapping[str, pd.Series], n: int, default: str) -> np.ndarray:
    """Return each row's subject as a string (text as written: ``"01"`` and ``"1"`` are two animals)."""
    if "subject" not in table:
        logger.info("load_trials: no 'subject' column; all %d rows are one animal named %r", n, default)
        return np.full(n, default, dtype=object)
    raw = table["subject"].to_numpy(dtype=object)
    bad = np.flatnonzero(_missing(raw))
    if len(bad):
        raise bad_value("subject", int(bad[0]), raw[bad[0]], "is missing")
    return np.array([str(v) for v in raw], dtype=object)


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_OTHER_DATE = re.compile(r"^\s*(\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{4}-\d{1,2}-\d{1,2})")
SessionOrder = Literal["auto", "file"]


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if np.isfinite(number) else None


def _label_keys(labels: list, subject: str, order: SessionOrder, column: str) -> dict:
    """Return a sort key per distinct session label of one subject (labels in order of first appearance)."""
    if order == "file" or len(labels) == 1:
        return {label: i for i, label in enumerate(labels)}
    if all(isinstance(v, pd.Timestamp | np.datetime64) for v in labels):
        return {label: pd.Timestamp(label) for label in labels}
    numbers = [_number(v) for v in labels]
    if all(n is not None for n in numbers) and not all(isinstance(v, bool | np.bool_) for v in labels):
        seen: dict[float, object] = {}
        for label, number in zip(labels, numbers, strict=True):
            if number in seen:
                raise ValueError(f"column {column!r}: values {seen[number]!r} and {label!r} of subject {subject!r} "
                                 f"are the same number {number:g}; write each session one way")
            seen[number] = label
        return dict(zip(labels, numbers, strict=True))
    text = [str(v) for v in labels]
    if all(_ISO_DATE.match(t) for t in text):
        return {label: pd.Timestamp(t) for label, t in zip(labels, text, strict=True)}
    dated = [t for t in text if _OTHER_DATE.match(t)]
    if dated:
        raise ValueError(f"column {column!r}: value {dated[0]!r} of subject {subject!r} is a date in an ambiguous "
                         "format (day/month or month/day?); write dates as ISO YYYY-MM-DD, or keep the file's "
                         "session order (session_order='file', --session-order file)")
    raise ValueError(f"column {column!r}: values {text[0]!r}, {text[1]!r} of subject {subject!r} are neither numbers "
                     "nor ISO dates (YYYY-MM-DD), so their order is unknown; number the sessions, add a 'date' "
                     "column, or keep the file's session order (session_order='file', --session-order file)")


def _column_labels(table: Mapping[str, pd.Series], name: str) -> np.ndarray:
    raw = table[name].to_numpy(dtype=object)
    bad = np.flatnonzero(_missing(raw))
    if len(bad):
        raise bad_value(name, int(bad[0]), raw[bad[0]], "is missing")
    return raw


def _sessions(table: Mapping[str, pd.Series], subject: np.ndarray, order: SessionOrder
              ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(sort code, label)`` per row: codes follow each subject's session order.

    Sessions sort by a ``date`` column when there is one (then by session), else by their own values:
    numbers (strings that spell numbers too), ISO dates or datetimes; other text, and dates in other formats,
    are refused unless ``order == "file"`` (order of first appearance).
    """
    n = len(subject)
    if "session" not in table and "date" not in table:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    label = _column_labels(table, "session") if "session" in table else _column_labels(table, "date")
    date = _column_labels(table, "date") if "date" in table and "session" in table else None
    codes = np.zeros(n, dtype=np.int64)
    for name in pd.unique(subject):
        idx = np.flatnonzero(subject == name)
        labels = list(pd.unique(label[idx]))
        keys = _label_keys(labels, str(name), order, "session" if "session" in table else "date")
        if date is not None and order == "auto":
            dates = _label_keys(list(pd.unique(date[idx])), str(name), order, "date")
            first: dict = {}
            for i in idx:
                key = (dates[date[i]], keys[label[i]])
                if first.setdefault(label[i], key) != key:
                    raise bad_value("date", int(i), date[i], f"differs from the date of session {label[i]!r} "
                                    f"of subject {name!r} on an earlier row; one date per session")
            keys = first
        ranked = {lab: r for r, lab in enumerate(sorted(labels, key=lambda lab: keys[lab]))}
        codes[idx] = [ranked[v] for v in label[idx]]
    return codes, label


def order_trials(table: Mapping[str, pd.Series], default_subject: str, *,
                 session_order: SessionOrder = "auto") -> pd.DataFrame:
    """Validate the keys and return them in trial order.

    Parameters
    ----------
    table : Mapping[str, pandas.Series]
        Canonical columns; ``subject``, ``session`` and ``trial`` are each optional.
    default_subject : str
        Subject name when there is no ``subject`` column.
    session_order : {"auto", "file"}
        ``"auto"``: sessions sort by a ``date`` column, else by their values (numbers, ISO dates); ``"file"``:
        in order of first appearance.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject`` (str), ``session`` (int sort code, in session order), ``session_label``,
        ``trial`` (int) and ``row`` (0-based source row), grouped by subject in order of first appearance,
        sessions sorted, and file order kept within a session.
    """
    n = len(table["choice"])
    rows = np.arange(n)
    subject = subject_labels(table, n, default_subject)
    session, label = _sessions(table, subject, session_order)
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
