"""The zero rule: no learning, the weights only diffuse (PsyTrack's random walk)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from learnrules.models.rule import LearningRule, Params

__all__ = ["ZeroRule"]


@dataclass(frozen=True)
class ZeroRule(LearningRule):
    r"""No drift: :math:`\Delta w = 0`, so ``w_{t+1} = w_t + eps_t`` is a Gaussian random walk.

    This is the model of PsyTrack (Roy et al., Neuron 2021). It has no parameters, which
    ``learnrules.models.dynamics.is_random_walk`` relies on to take the fast random-walk path.
    """

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return zeros shaped like ``w``."""
        return torch.zeros_like(w)
