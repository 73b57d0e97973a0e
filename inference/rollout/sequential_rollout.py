"""The deterministic rollout stepped trial by trial: the reference solver of ``w_{t+1} = w_t + drift``.

:mod:`~learnrules.inference.rollout.parallel_rollout` solves the same recurrence for all trials at once and falls back
to this loop; :mod:`~learnrules.inference.rollout.rollout` builds likelihoods and held-out prediction on both.
"""

from __future__ import annotations

import torch
from torch import Tensor

from learnrules.models.rule import LearningRule, Params

__all__ = ["rollout_trajectory"]


def rollout_trajectory(rule: LearningRule, params: Params, x: Tensor, y: Tensor, r: Tensor, mask: Tensor,
                       w0: Tensor, context0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Roll the weights forward over a chunk of trials.

    Parameters
    ----------
    rule, params
        The rule and its parameters.
    x : Tensor, shape (A, L, K)
        Features. ``y``, ``r``: choices and rewards, shape ``(A, L)``.
    mask : Tensor of bool, shape (A, L)
        Trials that update the weights (observed and not padding).
    w0 : Tensor, shape (A, K)
        Weights on the chunk's first trial.
    context0 : Tensor, shape (A, C), optional
        Context before the chunk (default: the rule's initial context).

    Returns
    -------
    weights : Tensor, shape (A, L, K)
        Weights used on each trial of the chunk.
    w_next : Tensor, shape (A, K)
        Weights after the chunk's last trial.
    context : Tensor, shape (A, C)
        Context after the chunk's last trial.
    """
    if context0 is None:
        context0 = rule.init_context(params, x.shape[:-2], x.shape[-1]).to(x.dtype)
    if x.shape[-2] == 0:
        return x.new_zeros(x.shape), w0, context0
    contexts = rule.contexts_from(params, context0, x, y, r)
    gate = mask.to(x.dtype).unsqueeze(-1)
    w, out = w0, []
    for t in range(x.shape[-2]):
        out.append(w)
        w = w + gate[:, t] * rule.drift(params, w, x[:, t], y[:, t], r[:, t], contexts[:, t])
    return torch.stack(out, dim=1), w, contexts[:, -1]
