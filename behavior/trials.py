"""The validated, immutable container of trials that every other part of learnrules consumes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["AnimalTrials", "TrialData"]

ChoiceCoding = Literal["ibl", "binary"]


def _frozen(array: np.ndarray, dtype: type) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class AnimalTrials:
    """One animal's trials in order, with canonical codes.

    Parameters
    ----------
    subject : str
        Animal identifier.
    session : ndarray of int, shape (trials,)
        Session index, 0-based, non-decreasing.
    trial : ndarray of int, shape (trials,)
        Trial number as given in the source table (kept to write results back).
    choice : ndarray of float, shape (trials,)
        1 = right, 0 = left, NaN = no-go kept as a missing observation.
    reward : ndarray of float, shape (trials,)
        1 = rewarded, 0 = not rewarded.
    answer : ndarray of float, shape (trials,)
        Correct side, 1 = right, 0 = left, NaN when unknown.
    covariates : Mapping[str, ndarray]
        Numeric per-trial columns by name: stimuli (``contrastLeft``, ``contrastRight`` in [0, 1] with 0 on
        the unused side, or any named stimulus such as psytrack's ``s1``), ``probabilityLeft``, user columns.
    held_out : ndarray of bool, shape (trials,), optional
        True on trials held out of fitting (cross-validation): their choices still move the weights, as all
        observed history does, but add no likelihood term, so they can be scored as choices the fit never
        saw. None: no trial held out.
    session_label : ndarray of str, shape (trials,), optional
        The session as the source table names it (a date, a number), so results merge back onto the table;
        default: the session index as text.

    All arrays are copies and read-only.
    """

    subject: str
    session: np.ndarray
    trial: np.ndarray
    choice: np.ndarray
    reward: np.ndarray
    answer: np.ndarray
    covariates: Mapping[str, np.ndarray] = field(default_factory=dict)
    held_out: np.ndarray | None = None
    session_label: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.choice)
        held_out = np.zeros(n, dtype=bool) if self.held_out is None else self.held_out
        object.__setattr__(self, "held_out", _frozen(held_out, bool))
        object.__setattr__(self, "session", _frozen(self.session, np.int64))
        object.__setattr__(self, "trial", _frozen(self.trial, np.int64))
        label = self.session if self.session_label is None else self.session_label
        object.__setattr__(self, "session_label", _frozen(np.asarray(label).astype(str), str))
        for name in ("choice", "reward", "answer"):
            object.__setattr__(self, name, _frozen(getattr(self, name), np.float64))
        covariates = {k: _frozen(v, np.float64) for k, v in self.covariates.items()}
        object.__setattr__(self, "covariates", MappingProxyType(covariates))
        for name, values in [("session", self.session), ("session_label", self.session_label),
                             ("trial", self.trial), ("reward", self.reward),
                             ("answer", self.answer), ("held_out", self.held_out), *covariates.items()]:
            if len(values) != n:
                raise ValueError(f"subject {self.subject!r}: column {name!r} has {len(values)} rows, "
                                 f"expected {n}")

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return len(self.choice)

    @property
    def n_sessions(self) -> int:
        """Number of distinct sessions."""
        return int(len(np.unique(self.session)))

    @property
    def session_start(self) -> np.ndarray:
        """Boolean mask, True on the first trial of each session (including trial 0)."""
        start = np.ones(self.n_trials, dtype=bool)
        start[1:] = self.session[1:] != self.session[:-1]
        return start

    @property
    def observed(self) -> np.ndarray:
        """Boolean mask, True where a choice was made (False for no-go trials kept as missing)."""
        return ~np.isnan(self.choice)

    def to_frame(self) -> pd.DataFrame:
        """Return the trials as a canonical table (choice and answer coded 0/1 with 1 = right)."""
        frame = pd.DataFrame({"subject": self.subject, "session": self.session, "trial": self.trial,
                              **dict(self.covariates), "choice": self.choice, "reward": self.reward,
                              "answer": self.answer})
        return frame


@dataclass(frozen=True)
class TrialData:
    """A validated set of animals, each with its ordered trials.

    Parameters
    ----------
    animals : tuple of AnimalTrials
        One entry per subject, in the order the subjects first appear in the source.
    choice_coding : {"ibl", "binary"}
        The choice code detected in the source: IBL's -1 (right) / +1 (left) / 0 (no-go), or 0/1 (1 = right).
    n_nogo_dropped : int
        Number of no-go trials dropped while loading (0 when they were kept as missing).
    """

    animals: tuple[AnimalTrials, ...]
    choice_coding: ChoiceCoding = "binary"
    n_nogo_dropped: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "animals", tuple(self.animals))
        if not self.animals:
            raise ValueError("TrialData needs at least one animal")
        subjects = [a.subject for a in self.animals]
        if len(set(subjects)) != len(subjects):
            raise ValueError(f"column 'subject': duplicate subjects {subjects}")

    @property
    def subjects(self) -> tuple[str, ...]:
        """Subject identifiers in order."""
        return tuple(a.subject for a in self.animals)

    @property
    def n_animals(self) -> int:
        """Number of animals."""
        return len(self.animals)

    @property
    def n_trials(self) -> int:
        """Total number of trials over all animals."""
        return sum(a.n_trials for a in self.animals)

    def __len__(self) -> int:
        return self.n_animals

    def __iter__(self) -> Iterator[AnimalTrials]:
        return iter(self.animals)

    def __getitem__(self, subject: str) -> AnimalTrials:
        for animal in self.animals:
            if animal.subject == subject:
                return animal
        raise KeyError(f"no subject {subject!r}; subjects are {list(self.subjects)}")

    def select(self, subjects: Sequence[str]) -> TrialData:
        """Return a TrialData with only the given subjects, in the given order."""
        return TrialData(tuple(self[s] for s in subjects), self.choice_coding, 0)

    def to_frame(self) -> pd.DataFrame:
        """Return all animals as one canonical trial table."""
        return pd.concat([a.to_frame() for a in self.animals], ignore_index=True)
