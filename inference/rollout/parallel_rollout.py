"""Deterministic rollout solved in parallel over trials: Newton's method on the whole trajectory.

A rollout ``w_{t+1} = F_t(w_t) = w_t + g_t drift(w_t, x_t, y_t, r_t, c_t)`` is sequential: 10,000 trials are
10,000 small network calls, and backprop through them as many again. Read as one system of equations in all
the weights at once it can be solved by Newton's method (Lim et al. 2024, "Parallelizing non-linear
sequential models over the sequence length", DEER): linearize every step at the current guess ``v``,
``w_{t+1} = J_t w_t + F_t(v_t) - J_t v_t``, and solve that linear recurrence with a prefix scan (log2 T
batched rounds). An iteration evaluates the rule on all trials in one batched call; from a guess close to the
answer (an optimizer's previous trajectory) a few iterations reach it to rounding error.

Gradients need no backprop through the iterations: one more linearized step at the solution, its Jacobians
held fixed, has the solution as its value and, by the implicit function theorem, the exact gradient of the
rollout with respect to the rule and the initial weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from learnrules.inference.rollout.sequential_rollout import rollout_trajectory
from learnrules.models.rule import LearningRule, Params

__all__ = ["affine_scan", "ParallelRollout", "parallel_trajectory"]


# Many tiny (K x K) products: a sum of K broadcast products is several times faster than a reduction over a
# dimension of size K or a batched matmul.
def _matvec(a: Tensor, v: Tensor) -> Tensor:
    return sum(a[..., :, j] * v[..., j, None] for j in range(v.shape[-1]))


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    return sum(a[..., :, j, None] * b[..., None, j, :] for j in range(a.shape[-1]))


def affine_scan(a: Tensor, b: Tensor, z0: Tensor) -> Tensor:
    """Solve ``z_{t+1} = a_t z_t + b_t`` for ``t = 0 .. T-1`` in log2(T) rounds of batched steps.

    Cyclic reduction: two steps composed are one affine step, so the even states follow a recurrence half
    as long; solve that one the same way, then each odd state is one step from the even state before it.
    The work is about 2T small matrix products, whatever the depth.

    Parameters
    ----------
    a : Tensor, shape (..., T, K, K)
    b : Tensor, shape (..., T, K)
    z0 : Tensor, shape (..., K)

    Returns
    -------
    Tensor, shape (..., T, K)
        ``z_1 .. z_T``. Differentiable in ``a``, ``b`` and ``z0``.
    """
    n_steps = a.shape[-3]
    if n_steps == 1:
        return (_matvec(a[..., 0, :, :], z0) + b[..., 0, :]).unsqueeze(-2)
    if n_steps % 2:  # one identity step at the end makes the length even; its state is dropped
        eye = torch.eye(a.shape[-1], dtype=a.dtype).expand(*a.shape[:-3], 1, *a.shape[-2:])
        a, b = torch.cat([a, eye], dim=-3), torch.cat([b, torch.zeros_like(b[..., :1, :])], dim=-2)
    first_a, second_a = a[..., 0::2, :, :], a[..., 1::2, :, :]
    first_b, second_b = b[..., 0::2, :], b[..., 1::2, :]
    even = affine_scan(_matmul(second_a, first_a), _matvec(second_a, first_b) + second_b, z0)  # z_2, z_4, ...
    before = torch.cat([z0.unsqueeze(-2), even[..., :-1, :]], dim=-2)  # z_0, z_2, ...
    odd = _matvec(first_a, before) + first_b  # z_1, z_3, ...
    both = torch.stack([odd, even], dim=-2).reshape(*b.shape)
    return both[..., :n_steps, :]


@dataclass(frozen=True)
class ParallelRollout:
    """A solved rollout: weights on each trial and after the last, and how they were found.

    Parameters
    ----------
    weights : Tensor, shape (A, T, K)
        Weights used on each trial (differentiable when gradients are on).
    w_next : Tensor, shape (A, K)
        Weights after the last trial.
    iterations : int
        Linearizations of the rollout (Newton steps, the last one the final step); 0 when it fell back to the
        sequential rollout.
    """

    weights: Tensor
    w_next: Tensor
    iterations: int


def _linearize(rule: LearningRule, params: Params, v: Tensor, x: Tensor, y: Tensor, r: Tensor, gate: Tensor,
               contexts: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``F_t(v_t)`` (with its graph to the rule) and the detached Jacobians ``dF_t/dw_t``."""
    with torch.enable_grad():
        v = v.detach().requires_grad_(True)
        step = v + gate * rule.drift(params, v, x, y, r, contexts)
        n = v.shape[-1]
        # trials are independent given v, so the gradient of a column's sum is that column's row per trial
        rows = [torch.autograd.grad(step[..., k].sum(), v, retain_graph=True)[0] for k in range(n)]
    return step, torch.stack(rows, dim=-2)


def _contexts(rule: LearningRule, params: Params, x: Tensor, y: Tensor, r: Tensor, truncate: int | None) -> Tensor:
    """Return the rule's contexts on every trial; with ``truncate``, detached every ``truncate`` trials."""
    context = rule.init_context(params, x.shape[:-2], x.shape[-1]).to(x.dtype)
    if truncate is None:
        return rule.contexts_from(params, context, x, y, r)
    parts = []
    for start in range(0, x.shape[-2], truncate):
        sl = slice(start, start + truncate)
        parts.append(rule.contexts_from(params, context, x[:, sl], y[:, sl], r[:, sl]))
        context = parts[-1][:, -1].detach()
    return torch.cat(parts, dim=-2)


def _sequential(rule: LearningRule, params: Params, x: Tensor, y: Tensor, r: Tensor, mask: Tensor, w0: Tensor,
                truncate: int | None) -> ParallelRollout:
    if truncate is None:
        return ParallelRollout(*rollout_trajectory(rule, params, x, y, r, mask, w0)[:2], 0)
    w, context, parts = w0, None, []
    for start in range(0, x.shape[-2], truncate):
        sl = slice(start, start + truncate)
        weights, w, context = rollout_trajectory(rule, params, x[:, sl], y[:, sl], r[:, sl], mask[:, sl], w, context)
        parts.append(weights)
        w, context = w.detach(), context.detach()
    return ParallelRollout(torch.cat(parts, dim=-2), w, 0)


def parallel_trajectory(rule: LearningRule, params: Params, x: Tensor, y: Tensor, r: Tensor, mask: Tensor,
                        w0: Tensor, *, guess: Tensor | None = None, truncate: int | None = None,
                        tol: float = 1e-10, max_iter: int = 50) -> ParallelRollout:
    """Solve the rollout of :func:`~learnrules.inference.rollout.rollout.rollout_trajectory` by Newton iterations.

    Same arguments (the whole sequence from the rule's initial context) and the same values and gradients,
    to rounding. ``guess`` (shape ``(A, T, K)``, e.g. the trajectory of the previous evaluation) starts the
    iterations; the default is the initial weights held constant. Once the guess satisfies every step of the
    rollout to within ``tol`` (times the largest weight, if above 1), one more Newton step from it (quadratic
    convergence: an error of order ``tol**2``; exact for a piecewise-linear network once its units' signs
    settle) gives the returned trajectory and its gradient. A solve that does not get there in ``max_iter``
    linearizations, or meets a non-finite value, falls back to the sequential rollout.

    ``truncate`` gives the gradient of truncated backprop instead (values unchanged): it does not flow back
    across the weights and context at every multiple of ``truncate`` trials, as when the sequential rollout
    is run in chunks of that length and detached between them (as the fallback then does).
    """
    if x.shape[-2] == 0:
        return _sequential(rule, params, x, y, r, mask, w0, None)
    contexts = _contexts(rule, params, x, y, r, truncate)
    gate = mask.to(x.dtype).unsqueeze(-1)
    start = w0.detach()
    v = start.unsqueeze(-2).expand(x.shape) if guess is None else guess.detach()
    for iteration in range(max_iter):
        step, jac = _linearize(rule, params, v, x, y, r, gate, contexts)
        residual = torch.cat([v[..., :1, :] - start.unsqueeze(-2), v[..., 1:, :] - step.detach()[..., :-1, :]], -2)
        if not torch.isfinite(residual).all():
            break
        if float(residual.abs().max()) <= tol * max(1.0, float(v.abs().max())):
            if truncate is not None:  # a chunk's first weights carry no gradient (detached in the sequential form)
                cut = torch.zeros(x.shape[-2], dtype=torch.bool)
                cut[truncate - 1::truncate] = True
                jac = torch.where(cut[:, None, None], 0.0, jac)
                step = torch.where(cut[:, None], step.detach(), step)
            exact = affine_scan(jac, step - _matvec(jac, v), w0)  # one more Newton step, with the gradient
            weights = torch.cat([w0.unsqueeze(-2), exact[..., :-1, :]], dim=-2)
            return ParallelRollout(weights, exact[..., -1, :], iteration + 1)
        solved = affine_scan(jac, step.detach() - _matvec(jac, v), start)
        v = torch.cat([start.unsqueeze(-2), solved[..., :-1, :]], dim=-2)
    return _sequential(rule, params, x, y, r, mask, w0, truncate)
