"""IBL trials through the ONE API: a subject's sessions, in date order, read into a validated :class:`TrialData`.

Needs the ``ibl`` extra (``pip install 'learnrules[ibl]'``, which installs ONE-api). ONE is imported only
when :func:`open_one` is called; :func:`load_one` takes any ONE instance the caller made (local mode on a
downloaded cache, or remote with an Alyx login).

Each session's ``trials`` object is read with ``one.load_object(eid, "trials")`` and checked against IBL's
ALF codes: ``choice`` -1 = counter-clockwise wheel turn = the animal reported RIGHT, +1 = LEFT, 0 = no-go;
``feedbackType`` +1 rewarded, -1 not; NaN contrast on the side without the stimulus. The table is then read
by :func:`~learnrules.behavior.load.load_trials` with ``coding="ibl"``, which checks the choice sign on the
rewarded trials (a rewarded choice matches the side with contrast).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import pandas as pd

from learnrules.behavior.load import load_trials
from learnrules.behavior.trials import TrialData

__all__ = ["load_one", "one_trials_table", "open_one", "TRIAL_ATTRIBUTES"]

logger = logging.getLogger(__name__)

#: The attributes of ALF's ``trials`` object that are read (``probabilityLeft`` only where present).
TRIAL_ATTRIBUTES = ("choice", "feedbackType", "contrastLeft", "contrastRight", "probabilityLeft")
_REQUIRED = ("choice", "feedbackType", "contrastLeft", "contrastRight")


def open_one(cache_dir: str | os.PathLike) -> Any:
    """Return a ONE instance in local mode on a cache folder (its ``sessions`` / ``datasets`` tables).

    Parameters
    ----------
    cache_dir : str or os.PathLike
        A folder holding ONE's cache tables and the ALF tree they index, e.g. one where
        ``ONE(base_url=..., cache_dir=...)`` downloaded a subject's trials, or one indexed by
        ``one.alf.cache.make_parquet_db``.

    Returns
    -------
    one.api.One
        ONE in local mode: no network access.

    Raises
    ------
    ImportError
        When ONE-api is not installed (``pip install 'learnrules[ibl]'``).
    FileNotFoundError
        When the folder does not exist or holds no ONE cache tables.
    """
    try:
        from one.api import One
    except ImportError as err:
        raise ImportError("reading IBL data through ONE needs ONE-api: pip install 'learnrules[ibl]'") from err
    folder = os.fspath(cache_dir)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no ONE cache folder at {folder!r}")
    if not any(name.startswith("sessions.") for name in os.listdir(folder)):
        raise FileNotFoundError(f"{folder!r} holds no ONE cache tables (sessions.pqt): download a subject with "
                                "ONE first, or index an ALF tree with one.alf.cache.make_parquet_db")
    with _summarized_warnings():
        return One(cache_dir=folder, mode="local")


@contextmanager
def _summarized_warnings() -> Iterator[None]:
    """Collect ONE's warnings (one per dataset on locally indexed caches) and log each kind once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    kinds: dict[str, list[str]] = {}
    for item in caught:
        kinds.setdefault(item.category.__name__, []).append(str(item.message))
    for kind, messages in kinds.items():
        more = f" ({len(messages)} times)" if len(messages) > 1 else ""
        logger.info("ONE: %s: %s%s", kind, messages[0], more)


def _sessions(one: Any, subject: str, protocol: str | None, date_range: Sequence[str] | None) -> pd.DataFrame:
    """Return a subject's sessions as ``eid, date, number, task_protocol``, sorted by date then number."""
    query: dict[str, Any] = {"subject": re.escape(subject) if getattr(one, "wildcards", False) else subject}
    if date_range is not None:
        query["date_range"] = list(date_range)
    with _summarized_warnings():
        eids, details = one.search(details=True, **query)
    rows = [{"eid": eid, "date": pd.Timestamp(d["date"]).date(), "number": int(d["number"]),
             "task_protocol": str(d.get("task_protocol") or "")}
            for eid, d in zip(eids, details or [], strict=True) if d["subject"] == subject]
    frame = pd.DataFrame(rows, columns=["eid", "date", "number", "task_protocol"])
    if frame.empty:
        raise ValueError(f"subject {subject!r}: no sessions in the ONE cache"
                         + (f" between {list(date_range)}" if date_range is not None else ""))
    if protocol is not None:
        if not frame["task_protocol"].astype(bool).any():
            raise ValueError(f"subject {subject!r}: the ONE cache records no task protocol for any of its "
                             f"{len(frame)} sessions, so protocol={protocol!r} cannot be applied (caches indexed "
                             "by make_parquet_db leave it empty)")
        keep = frame["task_protocol"].str.contains(protocol, regex=False)
        if not keep.any():
            raise ValueError(f"subject {subject!r}: no session's task protocol contains {protocol!r}; protocols: "
                             f"{sorted(set(frame['task_protocol']))}")
        logger.info("load_one: %s: %d of %d sessions have protocol %r", subject, int(keep.sum()), len(frame),
                    protocol)
        frame = frame[keep]
    return frame.sort_values(["date", "number"], kind="stable").reset_index(drop=True)


def _check_ibl_codes(values: np.ndarray, name: str, allowed: tuple[int, ...], where: str) -> None:
    bad = ~np.isin(values, allowed)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}: trials.{name}[{first}] = {values[first].item()!r} is not an IBL code "
                         f"(allowed {list(allowed)})")


def _session_table(one: Any, subject: str, index: int, session: pd.Series, collection: str) -> pd.DataFrame:
    """Read one session's trials object into rows of the canonical IBL table."""
    where = f"subject {subject!r}, session {session['date'].isoformat()}/{session['number']:03d} ({session['eid']})"
    with _summarized_warnings():
        trials = one.load_object(session["eid"], "trials", collection=collection)
    missing = [name for name in _REQUIRED if name not in trials]
    if missing:
        raise ValueError(f"{where}: the trials object lacks {missing}; it has {sorted(trials)}")
    columns = {name: np.asarray(trials[name], dtype=float).ravel() for name in TRIAL_ATTRIBUTES if name in trials}
    lengths = {name: len(v) for name, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{where}: trials attributes differ in length {lengths}")
    _check_ibl_codes(columns["choice"], "choice", (-1, 0, 1), where)
    _check_ibl_codes(columns["feedbackType"], "feedbackType", (-1, 1), where)
    n = lengths["choice"]
    return pd.DataFrame({"subject": subject, "session": index, "trial": np.arange(n), **columns,
                         "date": session["date"].isoformat(), "number": session["number"],
                         "task_protocol": session["task_protocol"], "eid": str(session["eid"])})


def one_trials_table(one: Any, subjects: str | Sequence[str], *, protocol: str | None = None,
                     date_range: Sequence[str] | None = None, collection: str = "alf") -> pd.DataFrame:
    """Return the subjects' trials from ONE as one IBL ALF table (the table :func:`load_one` validates).

    Parameters
    ----------
    one : one.api.One
        A ONE instance (see :func:`open_one`).
    subjects : str or sequence of str
        Subject nicknames, matched exactly.
    protocol : str, optional
        Keep only sessions whose task protocol contains this text, e.g. ``"trainingChoiceWorld"``.
    date_range : sequence of two str, optional
        First and last session date to keep (ISO dates, inclusive), as ONE's ``search`` takes them.
    collection : str
        ALF collection of the trials object (default ``"alf"``).

    Returns
    -------
    pandas.DataFrame
        One row per trial: ``subject``, ``session`` (0, 1, ... per subject, in the order of the session dates
        and, within a date, the session numbers), ``trial`` (0-based within the session), the trials attributes
        in IBL codes, and the session's ``date`` (ISO), ``number``, ``task_protocol`` and ``eid``.
    """
    names = [subjects] if isinstance(subjects, str) else list(subjects)
    if not names:
        raise ValueError("subjects: give at least one subject nickname")
    frames = []
    for subject in names:
        sessions = _sessions(one, subject, protocol, date_range)
        frames.extend(_session_table(one, subject, i, row, collection) for i, row in sessions.iterrows())
        logger.info("load_one: %s: %d sessions, %s to %s", subject, len(sessions), sessions["date"].iloc[0],
                    sessions["date"].iloc[-1])
    return pd.concat(frames, ignore_index=True)


def load_one(one: Any, subjects: str | Sequence[str], *, protocol: str | None = None,
             date_range: Sequence[str] | None = None, nogo: Literal["drop", "missing"] = "drop",
             collection: str = "alf") -> TrialData:
    """Load IBL subjects' trials through ONE into a validated :class:`TrialData`.

    Parameters
    ----------
    one : one.api.One
        A ONE instance: ``open_one(cache_dir)`` for a local cache, or ``one.api.ONE(...)`` online.
    subjects : str or sequence of str
        Subject nicknames, matched exactly; animals keep this order.
    protocol : str, optional
        Keep only sessions whose task protocol (ONE's ``sessions`` table) contains this text, e.g.
        ``"trainingChoiceWorld"`` or ``"biasedChoiceWorld"``. None keeps every session.
    date_range : sequence of two str, optional
        First and last session date to keep (ISO dates, inclusive).
    nogo : {"drop", "missing"}
        No-go trials (choice 0): dropped and counted, or kept as missing choices (see ``load_trials``).
    collection : str
        ALF collection of the trials object (default ``"alf"``).

    Returns
    -------
    TrialData
        Sessions in the order of their dates (and numbers within a date), trials in file order, choice coded
        1 = right; the same TrialData as ``load_trials`` gives for the same trials read from a CSV table.

    Raises
    ------
    ValueError
        When a subject has no (matching) sessions, a trials object lacks a required attribute, or a value is
        not an IBL code; and, from ``load_trials``, when rewarded choices contradict the side with contrast
        (a flipped choice sign).

    Examples
    --------
    >>> from learnrules.behavior.one import load_one, open_one  # doctest: +SKIP
    >>> one = open_one("ONE/openalyx.internationalbrainlab.org")  # doctest: +SKIP
    >>> data = load_one(one, "SWC_054", protocol="trainingChoiceWorld")  # doctest: +SKIP
    """
    table = one_trials_table(one, subjects, protocol=protocol, date_range=date_range, collection=collection)
    return load_trials(table[["subject", "session", "trial", *(c for c in TRIAL_ATTRIBUTES if c in table)]],
                       coding="ibl", nogo=nogo)
