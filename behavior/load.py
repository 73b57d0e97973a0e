"""Read a trial table (CSV, Parquet or DataFrame) into a validated :class:`TrialData`."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from learnrules.behavior.codes import (
    Coding,
    check_choice_sign,
    check_one_coding,
    derive_answer,
    detect_coding,
    looks_flipped,
    map_answer,
    map_choice,
    map_reward,
)
from learnrules.behavior.degenerate import warn_one_sided
from learnrules.behavior.keys import SessionOrder, order_trials, subject_labels
from learnrules.behavior.trials import AnimalTrials, TrialData
from learnrules.behavior.validate import check_finite, check_range, numeric, require_columns

__all__ = ["load_trials", "CANONICAL_COLUMNS"]

logger = logging.getLogger(__name__)

#: Names ``columns`` may map from (canonical name -> the caller's column name).
CANONICAL_COLUMNS = ("subject", "session", "trial", "choice", "reward", "feedbackType", "answer",
                     "contrastLeft", "contrastRight", "probabilityLeft", "date")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _normal(name: object) -> str:
    """Return a header name as matched: case, spaces and underscores ignored (``" Subject"``, ``contrast_left``)."""
    return "".join(str(name).split()).replace("_", "").lower()


#: Columns read as text from a CSV, so that subjects ``1`` and ``01`` stay two animals.
_TEXT_COLUMNS = ("subject", "session", "date")


def _check_header(names: Sequence[object], where: str) -> None:
    """Refuse duplicate column names, and two columns that both read as one canonical column."""
    seen: dict[str, str] = {}
    canonical = {_normal(c) for c in CANONICAL_COLUMNS}
    for name in (str(n) for n in names):
        if name in seen.values():
            raise ValueError(f"{where}: duplicate column {name!r}; rename or drop one")
        key = _normal(name) if _normal(name) in canonical else name
        if key in seen:
            raise ValueError(f"{where}: columns {seen[key]!r} and {name!r} both read as column "
                             f"{next(c for c in CANONICAL_COLUMNS if _normal(c) == key)!r}; rename or drop one")
        seen[key] = name


def _read_csv(path: Path, text_columns: Sequence[str]) -> pd.DataFrame:
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = header.iloc[0].tolist() if len(header) else []
    _check_header(names, repr(str(path)))
    wanted = {_normal(c) for c in text_columns}
    return pd.read_csv(path, dtype={n: str for n in names if _normal(n) in wanted})


def _read(source: str | os.PathLike | pd.DataFrame, text_columns: Sequence[str] = _TEXT_COLUMNS) -> pd.DataFrame:
    """Return the source as a DataFrame; file problems other than a missing file become ``ValueError``."""
    if isinstance(source, pd.DataFrame):
        return source
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"source must be a path or a pandas DataFrame, not {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no trial table at {str(path)!r}")
    try:
        if path.suffix.lower() in _PARQUET_SUFFIXES:
            return pd.read_parquet(path)
        return _read_csv(path, text_columns)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{str(path)!r} is empty: no columns to read (need columns 'choice' and "
                         "'feedbackType' or 'reward')") from None
    except ImportError:
        raise
    except ValueError as err:
        if "rename or drop one" in str(err):
            raise
        raise ValueError(f"cannot read {str(path)!r} as a trial table (columns unknown): {err}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise ValueError(f"cannot read {str(path)!r} as a trial table (columns unknown): {err}") from None


def _near_miss(name: str, unused: Sequence[str]) -> str | None:
    """Return an unused column whose name looks like a misspelt ``name`` (e.g. ``subjects``, ``sesion``)."""
    close = difflib.get_close_matches(_normal(name), [_normal(u) for u in unused], n=1, cutoff=0.8)
    return next((u for u in unused if close and _normal(u) == close[0]), None)


#: Canonical columns whose absence silently merges animals or sessions: a near miss is refused, not ignored.
_KEY_COLUMNS = ("subject", "session", "trial", "choice", "feedbackType", "reward", "contrastLeft", "contrastRight")


def _match(frame: pd.DataFrame, mapping: Mapping[str, str], stimulus_columns: Sequence[str]) -> dict[str, object]:
    """Map each canonical name present to the frame's column label (header case, spaces, underscores ignored)."""
    labels = {str(c): c for c in frame.columns}
    by_normal = {_normal(c): c for c in labels}
    found: dict[str, object] = {}
    claimed = set(mapping.values()) | set(stimulus_columns)
    for name in CANONICAL_COLUMNS:
        if name in mapping:
            found[name] = labels[mapping[name]]
        elif name in labels and name not in claimed:
            found[name] = labels[name]
        elif _normal(name) in by_normal and by_normal[_normal(name)] not in claimed:
            found[name] = labels[by_normal[_normal(name)]]
            logger.info("load_trials: column %r read as %r", by_normal[_normal(name)], name)
    unused = [c for c in labels if c not in claimed and labels[c] not in found.values()]
    for name in CANONICAL_COLUMNS:
        miss = None if name in found else _near_miss(name, unused)
        if miss is None:
            continue
        if name in _KEY_COLUMNS and not (name in ("feedbackType", "reward") and
                                         {"feedbackType", "reward"} & set(found)):
            raise ValueError(f"no column {name!r}, but a column {miss!r}: rename it to {name!r} (or map it with "
                             f"columns={{{name!r}: {miss!r}}}); columns present: {list(labels)}")
        logger.warning("load_trials: column %r is not read; did you mean %r?", miss, name)
    return found


def _canonical(frame: pd.DataFrame, columns: Mapping[str, str] | None,
               stimulus_columns: Sequence[str]) -> dict[str, pd.Series]:
    """Select the caller's columns under canonical names (the frame itself is left untouched)."""
    _check_header(list(frame.columns), "the trial table")
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(CANONICAL_COLUMNS))
    if unknown:
        raise ValueError(f"columns mapping: unknown canonical column(s) {unknown}; use {list(CANONICAL_COLUMNS)}")
    require_columns(frame, list(mapping.values()) + list(stimulus_columns))
    for name in stimulus_columns:
        if name in CANONICAL_COLUMNS or name in mapping.values():
            raise ValueError(f"stimulus column {name!r} is already used as a canonical column")
    found = _match(frame, mapping, stimulus_columns)
    if "choice" not in found or not {"feedbackType", "reward"} & set(found):
        require_columns(pd.DataFrame(columns=list(found)), ["choice", ("feedbackType", "reward")])
    table = {name: frame[label] for name, label in found.items()}
    table.update({name: frame[{str(c): c for c in frame.columns}[name]] for name in stimulus_columns})
    return table


def _describe_form(table: Mapping[str, pd.Series], columns: Mapping[str, str] | None, coding: str) -> str:
    if columns:
        return f"table mapped through `columns` ({dict(columns)}), {coding} codes"
    if coding == "ibl":
        return "IBL ALF trials table (choice -1 = right, +1 = left, 0 = no-go; feedbackType +/-1)"
    return "psytrack_learning / Liu et al. preprocessed table (choice 0/1, 1 = right; reward 0/1)"


def _contrast(table: Mapping[str, pd.Series], side: str, rows: np.ndarray) -> np.ndarray:
    name = f"contrast{side}"
    values = numeric(table[name], name, rows)
    check_range(values, name, rows, 0.0, 1.0)
    return np.nan_to_num(values, nan=0.0)  # IBL leaves the unused side NaN: no stimulus there


def _covariates(table: Mapping[str, pd.Series], stimulus_columns: Sequence[str],
                rows: np.ndarray) -> dict[str, np.ndarray]:
    covariates = {}
    if "contrastLeft" in table or "contrastRight" in table:
        require_columns(pd.DataFrame(columns=list(table)), ["contrastLeft", "contrastRight"])
        covariates["contrastLeft"] = _contrast(table, "Left", rows)
        covariates["contrastRight"] = _contrast(table, "Right", rows)
    if "probabilityLeft" in table:
        covariates["probabilityLeft"] = numeric(table["probabilityLeft"], "probabilityLeft", rows)
        check_range(covariates["probabilityLeft"], "probabilityLeft", rows, 0.0, 1.0)
    for name in stimulus_columns:
        covariates[name] = numeric(table[name], name, rows)
        check_finite(covariates[name], name, rows)
    return covariates


def _decode(raw: Mapping[str, np.ndarray], rows: np.ndarray, coding: Coding,
            reward_column: str) -> dict[str, np.ndarray]:
    """Map the raw codes under one coding; ``reference`` is the correct side known without feedback."""
    choice, nogo = map_choice(raw["choice"], rows, coding)
    reward = map_reward(raw["reward"], rows, reward_column)
    left, right = raw["contrastLeft"], raw["contrastRight"]
    if "answer" in raw:
        answer = map_answer(raw["answer"], rows)
        reference = answer
    else:
        answer = derive_answer(choice, reward, left, right)
        reference = np.where(left == right, np.nan, answer)
    return {"choice": choice, "reward": reward, "nogo": nogo.astype(float), "answer": answer,
            "reference": reference}


def _trial_values(table: Mapping[str, pd.Series], stimulus_columns: Sequence[str],
                  coding_request: Literal["auto", "ibl", "binary"], subject: np.ndarray
                  ) -> tuple[dict[str, np.ndarray], Coding]:
    """Parse the per-trial values (not the keys) into canonical codes; return them and the coding."""
    rows = np.arange(len(table["choice"]))
    reward_column = "feedbackType" if "feedbackType" in table else "reward"
    raw = {"choice": numeric(table["choice"], "choice", rows),
           "reward": numeric(table[reward_column], reward_column, rows)}
    if "answer" in table:
        raw["answer"] = numeric(table["answer"], "answer", rows)
    covariates = _covariates(table, stimulus_columns, rows)
    raw["contrastLeft"] = covariates.get("contrastLeft", np.zeros(len(rows)))
    raw["contrastRight"] = covariates.get("contrastRight", np.zeros(len(rows)))
    if coding_request == "auto":
        check_one_coding(raw["choice"], raw["reward"], subject)
    coding = detect_coding(raw["choice"], raw["reward"], coding_request)
    values = _decode(raw, rows, coding, reward_column)
    unrewarded_zero = not np.any((raw["choice"] == 0) & (values["reward"] == 1))
    if coding_request == "auto" and coding == "binary" and unrewarded_zero and \
            looks_flipped(values["choice"], values["reward"], values["reference"]):
        ibl = _decode(raw, rows, "ibl", reward_column)  # same codes are valid IBL codes (no -1 anywhere)
        if not looks_flipped(ibl["choice"], ibl["reward"], ibl["reference"]):
            logger.info("choice coding: IBL after all (no -1 codes, but only IBL's +1 = left makes rewarded "
                        "choices match the correct side, and no choice-0 trial was rewarded)")
            coding, values = "ibl", ibl
    reference = values.pop("reference")
    check_choice_sign(values["choice"], values["reward"], reference, rows, coding)
    for name in dict.fromkeys(subject.tolist()):  # one animal read with the other animals' code shows here
        mine = subject == name
        check_choice_sign(values["choice"][mine], values["reward"][mine], reference[mine], rows[mine], coding,
                          subject=str(name))
    values.update({f"covariate:{k}": v for k, v in covariates.items()})
    return values, coding


def _animals(keys: pd.DataFrame, values: Mapping[str, np.ndarray]) -> tuple[AnimalTrials, ...]:
    """Split the ordered trials by subject (in order of first appearance)."""
    animals = []
    for subject, block in keys.groupby("subject", sort=False):
        idx = block.index.to_numpy()
        if len(idx) < 2:
            raise ValueError(f"column 'subject': subject {subject!r} has {len(idx)} trial(s) (rows "
                             f"{block['row'].tolist()}); at least 2 are needed to learn anything")
        session = np.unique(block["session"].to_numpy(), return_inverse=True)[1]
        covariates = {k.split(":", 1)[1]: v[idx] for k, v in values.items() if k.startswith("covariate:")}
        animals.append(AnimalTrials(str(subject), session, block["trial"].to_numpy(), values["choice"][idx],
                                    values["reward"][idx], values["answer"][idx], covariates,
                                    session_label=block["session_label"].to_numpy()))
    return tuple(animals)


def _handle_nogo(keys: pd.DataFrame, is_nogo: np.ndarray, nogo: str) -> tuple[pd.DataFrame, int]:
    """Drop no-go rows (``nogo="drop"``) and return the kept keys with the number dropped."""
    dropped = is_nogo[keys["row"].to_numpy()] == 1.0
    if nogo != "drop" or not dropped.any():
        return keys, 0
    subjects = pd.unique(keys["subject"])
    kept = keys[~dropped]
    logger.info("load_trials: dropped %d no-go trials (choice 0)", int(dropped.sum()))
    emptied = [str(s) for s in subjects if s not in set(kept["subject"])]
    if emptied:
        raise ValueError(f"column 'choice': subject(s) {emptied} have only no-go trials (choice 0); "
                         "nothing is left after dropping them")
    return kept, int(dropped.sum())


def load_trials(source: str | os.PathLike | pd.DataFrame, *, columns: Mapping[str, str] | None = None,
                nogo: Literal["drop", "missing"] = "drop", stimulus_columns: Sequence[str] | None = None,
                coding: Literal["auto", "ibl", "binary"] = "auto", default_subject: str = "animal0",
                session_order: SessionOrder = "auto") -> TrialData:
    """Load and validate a trial table.

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A CSV path, a Parquet path (``.parquet`` / ``.pq``) or a DataFrame (never modified).
    columns : Mapping[str, str], optional
        Canonical name -> the table's column name, for tables with other names. Canonical names:
        ``subject, session, trial, choice, reward, feedbackType, answer, contrastLeft, contrastRight,
        probabilityLeft``. Unmapped canonical names are looked up as they are.
    nogo : {"drop", "missing"}
        IBL no-go trials (choice 0): dropped (counted in ``TrialData.n_nogo_dropped`` and logged), or kept
        with choice NaN (no likelihood term; the weights still evolve).
    stimulus_columns : sequence of str, optional
        Other numeric columns to keep as covariates (usable as features by name); must be finite.
    coding : {"auto", "ibl", "binary"}
        Choice code; ``"auto"`` reads IBL when any choice or feedback is -1 (see :func:`detect_coding`), and
        refuses a table whose animals use different codings (see :func:`check_one_coding`).
    default_subject : str
        Subject name when the table has no ``subject`` column (then all rows are one animal).
    session_order : {"auto", "file"}
        ``"auto"``: sessions sort by a ``date`` column when there is one, else by their values (numbers,
        ISO dates); other text and dates in other formats are refused. ``"file"``: order of first appearance.

    Returns
    -------
    TrialData
        Animals in order of first appearance; choice and answer coded 1 = right, 0 = left; reward 0/1.

    Raises
    ------
    ValueError
        For any malformed table, naming the column, the source row (0-based position, not the index
        label) and the value. A missing file raises ``FileNotFoundError``, a source of another type
        ``TypeError``.

    Notes
    -----
    Required: ``choice`` and ``feedbackType`` or ``reward`` (``feedbackType`` wins when both exist). Header
    names match ignoring case, spaces and underscores (``Subject``, ``feedback_type``); two columns that
    read as one name, and a misspelt key column (``subjects`` with no ``subject``), are refused. A CSV's
    ``subject``, ``session`` and ``date`` are read as text: subjects ``1`` and ``01`` are two animals.
    ``session`` is optional (one session); numbers (also written as text), ISO dates (YYYY-MM-DD) and
    datetimes sort as such, and sessions are renumbered 0, 1, ... in that order per animal.
    ``trial`` is optional (file order) and must increase within a session in file order, else an error.
    ``contrastLeft``/``contrastRight`` must lie in [0, 1]; NaN (IBL's unused side) is stored as 0.
    Without an ``answer`` column the correct side is the higher-contrast side, or on ties (zero contrast)
    the choice if rewarded and the other side if not; no-go ties stay NaN. Rewarded trials whose choice
    mostly contradicts the correct side raise an error: a flipped choice code.
    """
    if nogo not in ("drop", "missing"):
        raise ValueError(f"nogo must be 'drop' or 'missing', not {nogo!r}")
    frame = _read(source)
    stimulus_columns = [str(c) for c in (stimulus_columns or ())]
    if frame.shape[0] == 0:
        raise ValueError(f"the trial table has no rows; columns present: {[str(c) for c in frame.columns]}")
    if session_order not in ("auto", "file"):
        raise ValueError(f"session_order must be 'auto' or 'file', not {session_order!r}")
    table = _canonical(frame, columns, stimulus_columns)
    subject = subject_labels(table, frame.shape[0], default_subject)
    values, found = _trial_values(table, stimulus_columns, coding, subject)
    logger.info("load_trials: detected %s; %d rows", _describe_form(table, columns, found), frame.shape[0])
    keys, n_dropped = _handle_nogo(order_trials(table, default_subject, session_order=session_order),
                                   values["nogo"], nogo)
    rows = keys["row"].to_numpy()
    ordered = {k: v[rows] for k, v in values.items()}
    data = TrialData(_animals(keys.reset_index(drop=True), ordered), found, n_dropped)
    warn_one_sided(data)
    return data
