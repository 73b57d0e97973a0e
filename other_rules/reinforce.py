"""REINFORCE-family rules: policy-gradient updates of the GLM weights.

For the Bernoulli GLM ``p = sigmoid(w . x)`` the score of the choice is ``d log p(y | x, w) / dw = (y - p) x``,
so REINFORCE (Williams 1992) moves the weights along ``reward x score``. Ashwood, Roy, Bak & Pillow,
"Inferring learning rules from animal decision-making" (NeurIPS 2020) fit exactly these rules to the weights
of a latent-weight GLM, with one learning rate per weight and an optional scalar reward baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import constraints

from learnrules.models.rule import LearningRule, Parameter, Params

__all__ = ["policy_score", "Reinforce", "ReinforceBaseline", "AsymmetricReinforce"]

# Default rates: a simulated IBL cohort (bias + stimulus) goes from chance to > 80% correct within a few
# thousand trials (see tests/synthetic/test_cohort.py).
_ALPHA = 0.03


def policy_score(w: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Return the score ``(y - p) x`` of the choice under ``p = sigmoid(w . x)``, shape ``(*batch, K)``."""
    p = torch.sigmoid((w * x).sum(-1))
    return (y - p).unsqueeze(-1) * x


@dataclass(frozen=True)
class Reinforce(LearningRule):
    r"""REINFORCE without baseline (Ashwood et al. 2020, "REINFORCE").

    .. math:: \Delta w = \alpha \odot r \, (y - p) \, x, \qquad p = \sigma(w \cdot x)

    Only rewarded trials move the weights, towards the side that was chosen. ``alpha`` has one positive
    entry per weight.
    """

    parameters: ClassVar = MappingProxyType({
        "alpha": Parameter(_ALPHA, constraints.positive, per_feature=True, doc="learning rate of each weight"),
    })

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``alpha * r * (y - p) * x``."""
        return params["alpha"] * r.unsqueeze(-1) * policy_score(w, x, y)


@dataclass(frozen=True)
class ReinforceBaseline(LearningRule):
    r"""REINFORCE with a constant reward baseline (Ashwood et al. 2020, "REINFORCE with baseline").

    .. math:: \Delta w = \alpha \odot (r - \beta) \, (y - p) \, x

    Ashwood et al. write the update as ``alpha * grad_w log pi(y | x, w) * (r - beta)`` with a per-weight rate
    ``alpha`` and a scalar baseline ``beta``; here ``beta`` lies in [0, 1] (the reward scale), so unrewarded
    trials push the weights away from the chosen side. The baseline does not change the expected update
    (``E[(r - beta)(y - p) x] = E[p (1 - p) (2 a - 1) x]`` for the correct side ``a``), only its variance.
    """

    parameters: ClassVar = MappingProxyType({
        "alpha": Parameter(_ALPHA, constraints.positive, per_feature=True, doc="learning rate of each weight"),
        "beta": Parameter(0.5, constraints.unit_interval, doc="reward baseline"),
    })

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``alpha * (r - beta) * (y - p) * x``."""
        return params["alpha"] * (r - params["beta"]).unsqueeze(-1) * policy_score(w, x, y)


@dataclass(frozen=True)
class AsymmetricReinforce(LearningRule):
    r"""REINFORCE with separate learning rates after rewarded and unrewarded trials.

    .. math:: \Delta w = \alpha_r \odot (2 r - 1) \, (y - p) \, x, \qquad
              \alpha_r = \alpha_+ \text{ if } r = 1 \text{ else } \alpha_-

    The reward enters as +1 / -1 (a baseline of 1/2, scaled by two), so a reward pushes the weights towards
    the chosen side with rate ``alpha_plus`` and an omission pushes them away with rate ``alpha_minus``: the
    positive / negative prediction-error asymmetry of reinforcement-learning models of striatal learning
    (e.g. Frank et al. 2004; Lefebvre et al. 2017), in the policy-gradient form of Ashwood et al. (2020).

    The rule is declared by the total rate ``alpha = alpha_plus + alpha_minus`` and the omission share
    ``s = alpha_minus / alpha``, so that :math:`\Delta w = \alpha \odot (r - s) (y - p) x`, and reports
    ``alpha_plus = alpha (1 - s)`` and ``alpha_minus = alpha s`` through :meth:`derived`. Why: averaged over the
    choice, the update is ``alpha p (1 - p) x`` towards the correct side whatever ``s`` (``s`` is a per-weight
    reward baseline, which changes only the update's variance), so the data fix ``alpha`` tightly and ``s``
    only weakly. In these coordinates that is an axis-aligned, nearly Gaussian posterior; in
    ``(alpha_plus, alpha_minus)`` it is a curved ridge that a Laplace approximation cannot follow. Use
    :meth:`from_rates` to give a simulator the familiar rates.
    """

    parameters: ClassVar = MappingProxyType({
        "alpha": Parameter(_ALPHA, constraints.positive, per_feature=True,
                           doc="total rate alpha_plus + alpha_minus (sets the expected update)"),
        "omission_share": Parameter(1 / 3, constraints.unit_interval, per_feature=True,
                                    doc="alpha_minus / (alpha_plus + alpha_minus)"),
    })

    @staticmethod
    def from_rates(alpha_plus: Tensor, alpha_minus: Tensor) -> dict[str, Tensor]:
        """Return the rule's parameters for rates ``alpha_plus`` (after a reward) and ``alpha_minus``."""
        alpha_plus, alpha_minus = torch.as_tensor(alpha_plus), torch.as_tensor(alpha_minus)
        total = alpha_plus + alpha_minus
        return {"alpha": total, "omission_share": alpha_minus / total}

    def derived(self, params: Params) -> dict[str, Tensor]:
        """Return ``alpha_plus`` and ``alpha_minus``."""
        alpha, share = params["alpha"], params["omission_share"]
        return {"alpha_plus": alpha * (1 - share), "alpha_minus": alpha * share}

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``alpha * (r - omission_share) * (y - p) * x``."""
        return params["alpha"] * (r.unsqueeze(-1) - params["omission_share"]) * policy_score(w, x, y)
