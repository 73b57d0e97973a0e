"""Compressed REINFORCE updates with error feedback (a simulator-only rule)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Literal

import torch
from torch import Tensor
from torch.distributions import constraints

from learnrules.models.rule import LearningRule, Parameter, Params
from learnrules.other_rules.reinforce import policy_score

__all__ = ["CompressedReinforce"]


@dataclass(frozen=True)
class CompressedReinforce(LearningRule):
    r"""REINFORCE-with-baseline updates passed through a compressor, with error feedback.

    .. math:: v_t = \alpha \odot (r_t - \beta)(y_t - p_t) x_t + e_{t-1}, \qquad
              \Delta w_t = C(v_t), \qquad e_t = v_t - C(v_t)

    ``mode="sign"``: ``C(v) = alpha * sign(v)`` (every entry moves by its full rate, or not at all when
    ``v_i = 0``); ``mode="topk"``: ``C(v)`` keeps the ``k`` entries of largest magnitude and zeroes the rest.
    The part the compressor dropped (the residual ``e``) is carried to the next trial, so the virtual weights
    ``w_t + e_t`` follow plain full-precision REINFORCE steps (error feedback: Seide et al. 2014, 1-bit SGD;
    Karimireddy et al. 2019, EF-SignSGD; Stich et al. 2018, sparsified SGD with memory). Because the residual
    depends on the weights, the rule overrides :meth:`step`, is not Markov given the data, and cannot be
    fitted (``fittable = False``); ``drift`` takes the incoming residual as its ``context``.

    Parameters
    ----------
    mode : {"sign", "topk"}
        Compressor.
    k : int
        Entries kept per trial in ``"topk"`` mode.
    """

    mode: Literal["sign", "topk"] = "sign"
    k: int = 1

    parameters: ClassVar = MappingProxyType({
        "alpha": Parameter(0.03, constraints.positive, per_feature=True,
                           doc="learning rate of each weight (and the sign step)"),
        "beta": Parameter(0.5, constraints.unit_interval, doc="reward baseline"),
    })
    context_size: ClassVar[int] = -1  # the residual has one entry per feature (K)
    markov: ClassVar[bool] = False
    fittable: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.mode not in ("sign", "topk"):
            raise ValueError(f"mode must be 'sign' or 'topk', got {self.mode!r}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")

    def init_context(self, params: Params, batch_shape: tuple[int, ...], n_features: int) -> Tensor:
        """Return a zero residual, shape ``(*batch_shape, K)``."""
        return torch.zeros(*batch_shape, n_features, dtype=torch.get_default_dtype())

    def next_context(self, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Refuse: the residual depends on the weights, not on the data alone."""
        raise NotImplementedError("CompressedReinforce's residual depends on the weights; use step()")

    def _compress(self, params: Params, v: Tensor) -> Tensor:
        if self.mode == "sign":
            return params["alpha"] * torch.sign(v)
        k = min(self.k, v.shape[-1])
        top = v.abs().topk(k, dim=-1).indices
        keep = torch.zeros_like(v, dtype=torch.bool).scatter(-1, top, True)
        return torch.where(keep, v, torch.zeros_like(v))

    def _full_update(self, params: Params, state: Tensor, w: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        return params["alpha"] * (r - params["beta"]).unsqueeze(-1) * policy_score(w, x, y) + state

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return the compressed update ``C(v)`` given the incoming residual ``context``."""
        return self._compress(params, self._full_update(params, context, w, x, y, r))

    def step(self, params: Params, state: Tensor, w: Tensor, x: Tensor, y: Tensor, r: Tensor
             ) -> tuple[Tensor, Tensor]:
        """Return the compressed update and the residual carried to the next trial."""
        v = self._full_update(params, state, w, x, y, r)
        dw = self._compress(params, v)
        return dw, v - dw
