"""Tensors of a cohort padded to a common length, so rules, rollouts and filters vectorize over animals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from learnrules.behavior.features import design_matrix
from learnrules.behavior.trials import TrialData

__all__ = ["CohortTensors"]


@dataclass(frozen=True)
class CohortTensors:
    """Padded per-animal tensors, shapes ``(animals, T_max, ...)``.

    Parameters
    ----------
    features : Tensor, shape (animals, T, K)
        Design matrix; zero on padding.
    choice : Tensor, shape (animals, T)
        1 = right, 0 = left; 0 on missing choices and padding (see ``observed``).
    reward : Tensor, shape (animals, T)
        1 = rewarded, 0 = not; 0 on padding.
    observed : Tensor of bool, shape (animals, T)
        True where a choice was made: these trials have a likelihood term and a rule update.
    valid : Tensor of bool, shape (animals, T)
        True on real trials, False on padding.
    session_start : Tensor of bool, shape (animals, T)
        True on the first trial of each session.
    lengths : Tensor of int, shape (animals,)
        Number of real trials of each animal.
    feature_names, subjects : tuple of str
        Names of the K features and of the animals.
    held_out : Tensor of bool, shape (animals, T), optional
        True on observed trials held out of the fit's likelihood (cross-validation); their choices still
        move the weights. None: none held out. See :attr:`fitted`.
    """

    features: Tensor
    choice: Tensor
    reward: Tensor
    observed: Tensor
    valid: Tensor
    session_start: Tensor
    lengths: Tensor
    feature_names: tuple[str, ...]
    subjects: tuple[str, ...]
    held_out: Tensor | None = None

    @property
    def fitted(self) -> Tensor:
        """Trials whose choice enters a fit's likelihood: observed, not padding, not held out."""
        live = self.observed & self.valid
        return live if self.held_out is None else live & ~self.held_out

    @property
    def n_animals(self) -> int:
        """Number of animals."""
        return self.features.shape[0]

    @property
    def n_features(self) -> int:
        """Number of features K."""
        return self.features.shape[-1]

    @classmethod
    def from_trials(cls, data: TrialData, features: Sequence[str] = ("bias", "stimulus"), *,
                    dtype: torch.dtype | None = None) -> CohortTensors:
        """Build padded tensors from validated trials and named features."""
        dtype = dtype or torch.get_default_dtype()
        design = design_matrix(data, features)
        lengths = [a.n_trials for a in data]
        n, t_max, k = data.n_animals, max(lengths), design.n_features
        x = np.zeros((n, t_max, k))
        y, r = np.zeros((n, t_max)), np.zeros((n, t_max))
        observed, valid, start, held_out = (np.zeros((n, t_max), dtype=bool) for _ in range(4))
        for i, (animal, block) in enumerate(zip(data, design.blocks, strict=True)):
            t = animal.n_trials
            x[i, :t] = block
            y[i, :t] = np.nan_to_num(animal.choice, nan=0.0)
            r[i, :t] = animal.reward
            observed[i, :t] = animal.observed
            valid[i, :t] = True
            start[i, :t] = animal.session_start
            held_out[i, :t] = animal.held_out
        return cls(torch.as_tensor(x, dtype=dtype), torch.as_tensor(y, dtype=dtype),
                   torch.as_tensor(r, dtype=dtype), torch.as_tensor(observed), torch.as_tensor(valid),
                   torch.as_tensor(start), torch.as_tensor(lengths), design.names, data.subjects,
                   torch.as_tensor(held_out) if held_out.any() else None)

    def to(self, dtype: torch.dtype) -> CohortTensors:
        """Return the cohort with its float tensors (features, choice, reward) in ``dtype``."""
        if self.features.dtype == dtype:
            return self
        return replace(self, features=self.features.to(dtype), choice=self.choice.to(dtype),
                       reward=self.reward.to(dtype))

    def select(self, index: Sequence[int] | slice) -> CohortTensors:
        """Return the animals at ``index`` (e.g. a cross-validation fold); a slice gives views, not copies."""
        if isinstance(index, slice):
            idx, subjects = index, tuple(self.subjects[index])
        else:
            idx = torch.as_tensor(list(index), dtype=torch.long)
            subjects = tuple(self.subjects[i] for i in idx.tolist())
        return CohortTensors(self.features[idx], self.choice[idx], self.reward[idx], self.observed[idx],
                             self.valid[idx], self.session_start[idx], self.lengths[idx], self.feature_names,
                             subjects, None if self.held_out is None else self.held_out[idx])
