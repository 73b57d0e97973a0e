"""Declared, named features: the GLM design matrix built from a TrialData.

Feature vocabulary (names are kept everywhere downstream):

``bias``
    1 on every trial.
``stimulus``
    Signed IBL stimulus, ``g(contrastRight) - g(contrastLeft)`` with ``g(c) = tanh(5c) / tanh(5)``.
``stimulus_left``, ``stimulus_right``
    ``g(contrastLeft)`` and ``g(contrastRight)`` separately.
``prev_choice``, ``prev_reward``, ``prev_answer``
    Previous trial's choice (+1 right, -1 left), reward (+1 rewarded, -1 not) and correct side (+1 right,
    -1 left); 0 on each animal's first trial and after a missing choice.
any covariate name
    The raw column (e.g. psytrack's ``s1``, or a user's own column).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from learnrules.behavior.trials import AnimalTrials, TrialData

__all__ = ["DesignMatrix", "design_matrix", "ibl_transform", "animal_features"]

_IBL_GAIN = 5.0


def ibl_transform(contrast: np.ndarray) -> np.ndarray:
    """Return the IBL contrast transform ``tanh(5c) / tanh(5)`` (maps [0, 1] onto [0, 1])."""
    return np.tanh(_IBL_GAIN * np.asarray(contrast, dtype=float)) / np.tanh(_IBL_GAIN)


def _previous(values: np.ndarray) -> np.ndarray:
    """Shift by one trial, mapping 0/1 codes to -1/+1 and missing or first trials to 0."""
    signed = np.nan_to_num(2.0 * values - 1.0, nan=0.0)
    return np.concatenate([[0.0], signed[:-1]])


def _contrast(animal: AnimalTrials, side: str) -> np.ndarray:
    name = f"contrast{side}"
    if name not in animal.covariates:
        raise ValueError(f"feature 'stimulus' needs column {name!r}; columns are {sorted(animal.covariates)}")
    return ibl_transform(np.nan_to_num(animal.covariates[name], nan=0.0))


def _feature(animal: AnimalTrials, name: str) -> np.ndarray:
    if name == "bias":
        return np.ones(animal.n_trials)
    if name == "stimulus":
        return _contrast(animal, "Right") - _contrast(animal, "Left")
    if name == "stimulus_left":
        return _contrast(animal, "Left")
    if name == "stimulus_right":
        return _contrast(animal, "Right")
    if name == "prev_choice":
        return _previous(animal.choice)
    if name == "prev_reward":
        return _previous(np.where(np.isnan(animal.choice), np.nan, animal.reward))
    if name == "prev_answer":
        return _previous(animal.answer)
    if name in animal.covariates:
        return np.asarray(animal.covariates[name], dtype=float)
    known = "bias, stimulus, stimulus_left, stimulus_right, prev_choice, prev_reward, prev_answer"
    raise ValueError(f"unknown feature {name!r}: use {known} or a column of the table {sorted(animal.covariates)}")


def animal_features(animal: AnimalTrials, names: Sequence[str]) -> np.ndarray:
    """Return one animal's ``(trials, features)`` design matrix for the named features."""
    columns = [_feature(animal, name) for name in names]
    matrix = np.stack(columns, axis=1) if columns else np.zeros((animal.n_trials, 0))
    bad = np.argwhere(~np.isfinite(matrix))
    if len(bad):
        row, col = bad[0]
        raise ValueError(f"feature {names[col]!r} of subject {animal.subject!r} is not finite at row {row} "
                         f"(value {matrix[row, col]})")
    return matrix


@dataclass(frozen=True)
class DesignMatrix:
    """Per-animal design matrices with feature names.

    Parameters
    ----------
    names : tuple of str
        Feature names, one per column.
    subjects : tuple of str
        Subject of each block.
    blocks : tuple of ndarray
        One read-only ``(trials, features)`` float array per animal, in ``subjects`` order.
    """

    names: tuple[str, ...]
    subjects: tuple[str, ...]
    blocks: tuple[np.ndarray, ...]

    @property
    def n_features(self) -> int:
        """Number of features K."""
        return len(self.names)


def design_matrix(data: TrialData, features: Sequence[str] = ("bias", "stimulus")) -> DesignMatrix:
    """Build the named design matrix of every animal.

    Parameters
    ----------
    data : TrialData
        Validated trials.
    features : sequence of str
        Feature names (see the module docstring for the vocabulary).

    Returns
    -------
    DesignMatrix
        Names, subjects and one ``(trials, features)`` block per animal.
    """
    names = tuple(features)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate feature names in {list(names)}")
    blocks = []
    for animal in data:
        block = animal_features(animal, names)
        block.flags.writeable = False
        blocks.append(block)
    return DesignMatrix(names, data.subjects, tuple(blocks))
