"""GLM agents that learn with any rule, simulated for many animals at once (a loop over trials only).

Each animal ``a`` on trial ``t`` sees features ``x_t``, chooses right with ``p_t = sigmoid(w_t . x_t)``, is
rewarded when its choice matches the stimulus side, and updates its weights with the rule::

    dw_t, state_t = rule.step(params, state_{t-1}, w_t, x_t, y_t, r_t)
    w_{t+1} = w_t + dw_t + s_{t+1} * eps_t,     eps_t ~ N(0, I)

where ``s_{t+1}`` is ``sigma_session`` when trial ``t + 1`` opens a session and ``sigma`` otherwise (the same
dynamics as ``learnrules.models.dynamics``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from learnrules.behavior.features import ibl_transform
from learnrules.models.rule import LearningRule
from learnrules.synthetic.task import TaskTrials

__all__ = ["AgentTrajectories", "EXOGENOUS_FEATURES", "HISTORY_FEATURES", "coerce_params", "task_features",
           "simulate_agents"]

EXOGENOUS_FEATURES = ("bias", "stimulus", "stimulus_left", "stimulus_right")
HISTORY_FEATURES = ("prev_choice", "prev_reward", "prev_answer")


@dataclass(frozen=True)
class AgentTrajectories:
    """What happened to every simulated animal, as ``(animals, T, ...)`` tensors.

    Parameters
    ----------
    features : Tensor, shape (animals, T, K)
    weights : Tensor, shape (animals, T, K)
        Weights before each trial.
    updates : Tensor, shape (animals, T, K)
        Rule update after each trial (without noise).
    choice_prob : Tensor, shape (animals, T)
        ``p(y = 1)`` on each trial.
    choice, reward : Tensor, shape (animals, T)
        1 = right / rewarded.
    """

    features: Tensor
    weights: Tensor
    updates: Tensor
    choice_prob: Tensor
    choice: Tensor
    reward: Tensor


def coerce_params(rule: LearningRule, params: Mapping[str, object] | None, n_features: int, *,
                  dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """Return the rule's parameters as tensors of their declared shapes, defaults filling missing names.

    ``dtype`` defaults to torch's default dtype.

    Raises
    ------
    ValueError
        For an unknown name, a wrong shape, or a value outside the parameter's constraint.
    """
    dtype = dtype or torch.get_default_dtype()
    out = {name: torch.full(p.shape(n_features), float(p.default), dtype=dtype)
           for name, p in rule.parameters.items()}
    unknown = sorted(set(params or {}) - set(rule.parameters))
    if unknown:
        raise ValueError(f"rule {rule.name} has no parameter(s) {unknown}; it has {sorted(rule.parameters)}")
    for name, value in (params or {}).items():
        spec = rule.parameters[name]
        tensor = torch.as_tensor(np.asarray(value, dtype=float), dtype=dtype)
        try:
            tensor = tensor.expand(spec.shape(n_features)).clone()
        except RuntimeError:
            raise ValueError(f"parameter {name!r} of {rule.name} must have shape {spec.shape(n_features)}, "
                             f"got {tuple(tensor.shape)}") from None
        if not bool(spec.constraint.check(tensor).all()):
            raise ValueError(f"parameter {name!r} of {rule.name} = {tensor.tolist()} violates {spec.constraint}")
        out[name] = tensor
    return out


def task_features(trials: TaskTrials, names: Sequence[str]) -> np.ndarray:
    """Return the exogenous feature columns of one animal, ``(trials, K)``; history columns are 0 here."""
    g_left, g_right = ibl_transform(trials.contrast_left), ibl_transform(trials.contrast_right)
    columns = {"bias": np.ones_like(g_left), "stimulus": g_right - g_left, "stimulus_left": g_left,
               "stimulus_right": g_right}
    prev_answer = np.concatenate([[0.0], 2.0 * trials.answer[:-1] - 1.0])
    out = []
    for name in names:
        if name == "prev_answer":
            out.append(prev_answer)
        elif name in HISTORY_FEATURES:
            out.append(np.zeros_like(g_left))
        elif name in columns:
            out.append(columns[name])
        else:
            known = ", ".join(EXOGENOUS_FEATURES + HISTORY_FEATURES)
            raise ValueError(f"feature {name!r} cannot be simulated; use {known}")
    return np.stack(out, axis=1) if out else np.zeros((len(g_left), 0))


def _history_columns(names: Sequence[str]) -> tuple[int | None, int | None]:
    """Return the column indices of ``prev_choice`` and ``prev_reward`` (None when absent)."""
    names = list(names)
    return (names.index("prev_choice") if "prev_choice" in names else None,
            names.index("prev_reward") if "prev_reward" in names else None)


def simulate_agents(rule: LearningRule, params: Mapping[str, Tensor], features: Tensor, answer: Tensor,
                    w0: Tensor, noise_sd: Tensor, generator: torch.Generator, *,
                    feature_names: Sequence[str] = (), reward_probability: Tensor | None = None
                    ) -> AgentTrajectories:
    """Run the agents trial by trial, vectorized over animals.

    Parameters
    ----------
    rule : LearningRule
        The learning rule (its :meth:`~LearningRule.step` is called once per trial for all animals).
    params : Mapping[str, Tensor]
        Rule parameters, shaped as declared (see :func:`coerce_params`).
    features : Tensor, shape (animals, T, K)
        Exogenous features; ``prev_choice`` / ``prev_reward`` columns (named in ``feature_names``) are filled
        from the agent's own previous choice and reward (+1 / -1, 0 on the first trial).
    answer : Tensor, shape (animals, T)
        Correct side, 1 = right.
    w0 : Tensor, shape (animals, K)
        Initial weights.
    noise_sd : Tensor, shape (animals, T, K)
        Noise sd added after trial t (the transition into trial t + 1).
    generator : torch.Generator
        Source of all randomness.
    feature_names : sequence of str
        Names of the columns of ``features``.
    reward_probability : Tensor, shape (animals, T), optional
        Probability that a correct choice is rewarded (None: always; errors never are).

    Returns
    -------
    AgentTrajectories
    """
    n_animals, n_trials, k = features.shape
    dtype = features.dtype
    uniforms = torch.rand(n_animals, n_trials, generator=generator, dtype=dtype)
    noise = torch.randn(n_animals, n_trials, k, generator=generator, dtype=dtype) * noise_sd
    # drawn last and only when needed, so a seed's choices without reward blocks are as they always were
    paid = None if reward_probability is None else \
        torch.rand(n_animals, n_trials, generator=generator, dtype=dtype) < reward_probability
    prev_choice_col, prev_reward_col = _history_columns(feature_names)
    features = features.clone()
    weights, updates = torch.empty_like(features), torch.empty_like(features)
    probs, choices, rewards = (torch.empty(n_animals, n_trials, dtype=dtype) for _ in range(3))
    state = rule.init_context(params, (n_animals,), k).to(dtype)
    w = w0.clone()
    with torch.no_grad():
        for t in range(n_trials):
            x = features[:, t]
            p = torch.sigmoid((w * x).sum(-1))
            y = (uniforms[:, t] < p).to(dtype)
            r = (y == answer[:, t]).to(dtype)
            if paid is not None:
                r = r * paid[:, t]
            dw, state = rule.step(params, state, w, x, y, r)
            weights[:, t], updates[:, t], probs[:, t], choices[:, t], rewards[:, t] = w, dw, p, y, r
            if t + 1 < n_trials:
                if prev_choice_col is not None:
                    features[:, t + 1, prev_choice_col] = 2.0 * y - 1.0
                if prev_reward_col is not None:
                    features[:, t + 1, prev_reward_col] = 2.0 * r - 1.0
            w = w + dw + noise[:, t]
    return AgentTrajectories(features, weights, updates, probs, choices, rewards)
