"""Start a network rule where a parametric fit ended: regress its update onto the fitted rule's drift.

A plain network rule fitted from the random walk has to learn the whole rule through the ELBO, whose signal
per parameter is weak: on 12 simulated animals x 10,000 trials L-BFGS gained ~1 nat per 10 steps and was still
50 nats below the fitted 3-parameter rule after 50 steps. Regressing the network's update onto the fitted
parametric rule's drift at the states the posterior visited (every trial's posterior mean weights, features,
choice and reward) is an ordinary least-squares problem that L-BFGS solves in seconds; the variational fit
then starts next to the parametric optimum and only has to learn what the parametric rule misses.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from learnrules.models.dynamics import drift_sequence, rule_contexts
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import NeuralRule
from learnrules.models.rule import LearningRule, Params

__all__ = ["distill"]

logger = logging.getLogger(__name__)


def distill(network: NeuralRule, teacher: LearningRule, params: Params, data: CohortTensors, weights: Tensor, *,
            max_iter: int = 300) -> tuple[NeuralRule, float]:
    """Return a copy of ``network`` whose update approximates ``teacher``'s drift on the visited states.

    Parameters
    ----------
    network : NeuralRule
        A Markov network rule (e.g. :class:`~learnrules.models.neural.MLPRule`); not modified.
    teacher : LearningRule
        The fitted rule to imitate, with its parameters ``params``.
    data : CohortTensors
        The trials (features, choices, rewards; only observed trials count).
    weights : Tensor, shape (animals, T, K)
        The weights at which to match the updates (a fit's posterior means).
    max_iter : int
        L-BFGS iterations.

    Returns
    -------
    network : NeuralRule
        The trained copy.
    residual : float
        Root mean squared difference of the updates, relative to the root mean square of the teacher's.
    """
    if not network.markov:
        raise ValueError(f"distill fits a Markov network rule, got {network.name} (see GRURule.from_mlp)")
    student = network.copy()
    student.network.to(data.features.dtype)
    weights = torch.as_tensor(weights, dtype=data.features.dtype)
    live = data.observed & data.valid
    with torch.no_grad():
        target = drift_sequence(teacher, params, data, weights, rule_contexts(teacher, params, data))[live]
    scale = target.pow(2).mean().clamp_min(1e-30)
    empty = data.features.new_zeros(int(live.sum()), 0)
    inputs = (weights[live], data.features[live], data.choice[live], data.reward[live], empty)
    opt = torch.optim.LBFGS(list(student.network.parameters()), max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-14)

    def loss() -> Tensor:
        opt.zero_grad()
        value = (student.drift({}, *inputs) - target).pow(2).mean() / scale
        value.backward()
        return value

    opt.step(loss)
    with torch.no_grad():
        residual = float(((student.drift({}, *inputs) - target).pow(2).mean() / scale).sqrt())
    logger.info("distilled %s from %s: relative RMS residual %.4f", student.name, teacher.name, residual)
    return student, residual
