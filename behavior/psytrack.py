"""psytrack's dict format, and the rat dataset shipped inside the installed ``psytrack`` wheel.

psytrack (Roy et al., Neuron 2021) stores one animal as a dict: ``y`` (choices, 1/2 with 2 = right, or
0/1), ``answer`` (correct side, same codes), ``correct`` (0/1), ``dayLength`` (trials per session), optional
``missing_trials`` (bool mask) and ``inputs`` (name -> array of shape (trials,) or (trials, M) whose column
0 is the current trial and column j the value j trials back).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from learnrules.behavior.codes import check_choice_sign
from learnrules.behavior.trials import AnimalTrials, TrialData
from learnrules.behavior.validate import bad_value, check_codes, check_finite, check_integer

__all__ = ["from_psytrack", "load_psytrack_rat"]

logger = logging.getLogger(__name__)


def _vector(D: Mapping, key: str, n: int | None = None) -> np.ndarray:
    if key not in D:
        raise ValueError(f"psytrack dict: missing key {key!r}; keys present: {sorted(map(str, D))}")
    try:
        values = np.asarray(D[key], dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"psytrack dict: key {key!r} is not numeric") from None
    if values.ndim != 1 or (n is not None and len(values) != n):
        raise ValueError(f"psytrack dict: key {key!r} has shape {values.shape}, expected ({n or 'trials'},)")
    return values


def _side_codes(y: np.ndarray, answer: np.ndarray | None) -> float:
    """Return the offset to subtract: 1 for psytrack's 1/2 codes, 0 for 0/1 (decided from y and answer)."""
    both = y if answer is None else np.concatenate([y, answer])
    if np.any(both == 0):
        return 0.0
    return 1.0


def _sessions(D: Mapping, n: int) -> np.ndarray:
    if "dayLength" not in D or np.size(D["dayLength"]) == 0:
        return np.zeros(n, dtype=np.int64)
    days = _vector(D, "dayLength")
    rows = np.arange(len(days))
    check_integer(days, "dayLength", rows)
    if np.any(days < 0) or days.sum() != n:
        raise ValueError(f"psytrack dict: key 'dayLength' must be non-negative and sum to {n} trials "
                         f"(sums to {days.sum():g})")
    days = days[days > 0].astype(np.int64)  # empty days do not make sessions
    return np.repeat(np.arange(len(days)), days)


def _inputs(D: Mapping, n: int) -> dict[str, np.ndarray]:
    """Column 0 (the current trial) of every input, by name."""
    covariates = {}
    for key, values in dict(D.get("inputs", {})).items():
        try:
            column = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"psytrack dict: input {key!r} is not numeric") from None
        column = column[:, 0] if column.ndim == 2 and column.shape[1] else column
        if column.shape != (n,):
            raise ValueError(f"psytrack dict: input {key!r} has shape {np.shape(values)}, expected ({n}, M)")
        check_finite(column, str(key), np.arange(n))
        covariates[str(key)] = column
    return covariates


def from_psytrack(D: Mapping, *, subject: str | None = None) -> TrialData:
    """Convert psytrack's dict format into a TrialData with one animal.

    Parameters
    ----------
    D : Mapping
        psytrack's dataset dict (see the module docstring); never modified.
    subject : str, optional
        Subject name; defaults to ``D["name"]`` when present, else ``"psytrack"``.

    Returns
    -------
    TrialData
        One animal; choice 1 = right; reward = ``correct`` (derived as ``y == answer`` when absent);
        covariates: column 0 (the current trial) of every input, by its name (e.g. ``s1``, ``s2``).

    Notes
    -----
    Codes are psytrack's 1/2 (2 = right) unless ``y`` or ``answer`` contain a 0, then 0/1. Trials flagged in
    ``missing_trials`` are kept with choice NaN.
    """
    y = _vector(D, "y")
    n = len(y)
    rows = np.arange(n)
    answer = _vector(D, "answer", n) if "answer" in D else None
    offset = _side_codes(y, answer)
    allowed = (offset, offset + 1.0)
    check_codes(y, "y", rows, allowed, "psytrack: 2 = right, 1 = left" if offset else "1 = right, 0 = left")
    choice = y - offset
    if answer is not None:
        check_codes(answer, "answer", rows, allowed, "same codes as y")
        answer = answer - offset
    if "correct" in D:
        reward = _vector(D, "correct", n)
        check_codes(reward, "correct", rows, (0, 1), "1 = correct")
    elif answer is not None:
        reward = (choice == answer).astype(float)
    else:
        raise ValueError(f"psytrack dict: need key 'correct' or 'answer'; keys present: {sorted(map(str, D))}")
    if np.isnan(choice).any() or np.isnan(reward).any():
        key = "y" if np.isnan(choice).any() else "correct"
        first = int(np.flatnonzero(np.isnan(choice) | np.isnan(reward))[0])
        raise bad_value(key, first, float("nan"), "is missing")
    if "missing_trials" in D:
        missing = np.asarray(D["missing_trials"], dtype=bool)
        if missing.shape != (n,):
            raise ValueError(f"psytrack dict: key 'missing_trials' has shape {missing.shape}, expected ({n},)")
        choice = np.where(missing, np.nan, choice)
    covariates = _inputs(D, n)
    answer = np.full(n, np.nan) if answer is None else answer
    check_choice_sign(choice, reward, answer, rows, "binary")
    name = subject if subject is not None else str(D.get("name", "psytrack"))
    animal = AnimalTrials(name, _sessions(D, n), rows, choice, reward, answer, covariates)
    if animal.n_trials < 2:
        raise ValueError(f"psytrack dict: key 'y' has {animal.n_trials} trial(s); at least 2 are needed")
    return TrialData((animal,), "binary", 0)


def load_psytrack_rat() -> TrialData:
    """Load psytrack's sample rat (W053: 20,000 trials, 80 sessions) from the installed ``psytrack`` package.

    Covariates ``s1``, ``s2``, ``s_avg`` (the auditory stimuli and their running average) and psytrack's
    history inputs ``c`` (previous choice), ``r`` (previous reward, +1/-1), ``h`` (previous answer; 0 = none), all at
    column 0.

    Raises
    ------
    ImportError
        When psytrack is not installed.
    """
    spec = importlib.util.find_spec("psytrack")  # locate the wheel without importing it (slow, noisy)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the rat dataset ships with psytrack: pip install learnrules[test] "
                          "or pip install psytrack")
    path = Path(next(iter(spec.submodule_search_locations))) / "examples" / "sampleRatData.npz"
    if not path.is_file():
        raise ImportError(f"the installed psytrack has no {path.name} (looked in {path.parent}); "
                          "pip install psytrack>=2.0")
    # psytrack's own file stores one dict as a 0-d object array, hence allow_pickle.
    with np.load(path, allow_pickle=True) as archive:
        D = archive["D"].item()
    data = from_psytrack(D)
    logger.info("load_psytrack_rat: %d trials, %d sessions", data.n_trials, data.animals[0].n_sessions)
    return data
