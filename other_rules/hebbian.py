"""A reward-modulated three-factor Hebbian rule with a globally broadcast error."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import constraints

from learnrules.models.rule import LearningRule, Parameter, Params

__all__ = ["GlobalErrorHebbian"]


@dataclass(frozen=True)
class GlobalErrorHebbian(LearningRule):
    r"""Three-factor Hebbian rule: presynaptic features x postsynaptic choice x global reward error.

    .. math:: \Delta w = \alpha \odot (r - \bar r) \, (2 y - 1) \, x, \qquad
              \bar r = p_{\text{chosen}} = y p + (1 - y)(1 - p)

    The postsynaptic factor is the choice made (+1 right, -1 left), not REINFORCE's ``y - p``; the third
    factor is one scalar error broadcast to every synapse, as in "Credit assignment through broadcasting a
    global error vector" (Clark, Abbott & Chung, NeurIPS 2021) and reward-modulated Hebbian learning
    (Legenstein et al. 2008). The expected reward ``rbar`` is the agent's own confidence in the side it chose,
    so the rule stays Markov. Averaged over choices, ``E[dw | x] = alpha (q - p) x`` where ``q`` is the
    probability that right is correct: the weights move until the policy matches the reward odds.
    """

    parameters: ClassVar = MappingProxyType({
        "alpha": Parameter(0.015, constraints.positive, per_feature=True, doc="learning rate of each weight"),
    })

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``alpha * (r - p_chosen) * (2y - 1) * x``."""
        p = torch.sigmoid((w * x).sum(-1))
        expected = y * p + (1.0 - y) * (1.0 - p)
        return params["alpha"] * ((r - expected) * (2.0 * y - 1.0)).unsqueeze(-1) * x
