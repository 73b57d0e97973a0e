"""The delta rule (Rescorla-Wagner / Q-learning with linear action values) as a GLM weight update."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from torch import Tensor
from torch.distributions import constraints

from learnrules.models.rule import LearningRule, Parameter, Params

__all__ = ["DeltaRule"]


@dataclass(frozen=True)
class DeltaRule(LearningRule):
    r"""Delta rule on linear action values, with a softmax inverse temperature.

    The agent holds linear action values ``Q_R = v_R . x`` and ``Q_L = v_L . x``, chooses with
    ``logit = beta (Q_R - Q_L)``, and updates the chosen side by its reward prediction error
    (Rescorla & Wagner 1972; Sutton & Barto 2018, ch. 2 and 9; the "delta rule" baseline of Liu, Geadah &
    Pillow 2025)::

        chose right:  v_R += alpha * (r - Q_R) * x
        chose left:   v_L += alpha * (r - Q_L) * x

    The GLM weights are ``w = beta (v_R - v_L)``. To stay a function of ``w`` alone we use the antisymmetric
    parameterization ``v_R = w / (2 beta)``, ``v_L = -w / (2 beta)`` (the common value ``v_R + v_L`` does not
    change choices and is set to zero), so ``Q_chosen = s z / (2 beta)`` with ``s = 2 y - 1``, ``z = w . x``:

    .. math:: \Delta w = \alpha \odot s \left(\beta r - \frac{s z}{2}\right) x

    (chose right: ``alpha (beta r - z / 2) x``; chose left: ``-alpha (beta r + z / 2) x``). With ``beta = 1``
    this is the plain ``logit = Q_R - Q_L`` form; the temperature lets the agent become accurate, because the
    value difference itself stays within [-1, 1]. In a stream where both sides are sampled equally often,
    ``Q_R - Q_L = z / beta`` converges to ``P(reward | right) - P(reward | left)``. ``alpha`` is per weight.
    """

    parameters: ClassVar = MappingProxyType({
        "alpha": Parameter(0.002, constraints.positive, per_feature=True, doc="learning rate of each weight"),
        "beta": Parameter(8.0, constraints.positive, doc="softmax inverse temperature on Q_R - Q_L"),
    })

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``alpha * s * (beta r - s z / 2) * x`` with ``s = 2 y - 1``."""
        s = 2.0 * y - 1.0
        z = (w * x).sum(-1)
        error = params["beta"] * r - 0.5 * s * z
        return params["alpha"] * (s * error).unsqueeze(-1) * x

    @staticmethod
    def action_values(w: Tensor, x: Tensor, beta: float | Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(Q_R, Q_L)`` implied by weights ``w`` on features ``x`` (antisymmetric values)."""
        q_right = (w * x).sum(-1) / (2.0 * beta)
        return q_right, -q_right
