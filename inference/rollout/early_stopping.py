"""Early stopping of rollout fits: which trials to hold out, and when patience runs out.

:func:`holdout_sessions` chooses a share of each animal's sessions to hold out of the loss;
:func:`early_stop_index` is the patience counter of :func:`~learnrules.inference.rollout.rollout_fit.fit_rollout`,
a pure function of the held-out scores, so that a recorded path can be read as an early-stopped fit
(bench/neural_speed.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from learnrules.models.inputs import CohortTensors

__all__ = ["early_stop_index", "holdout_sessions"]


def holdout_sessions(cohort: CohortTensors, *, fraction: float = 0.2, min_sessions: int = 5,
                     seed: int | None = 0) -> Tensor:
    """Choose trials to hold out of a rollout fit for early stopping: a share of each animal's sessions.

    Its units are its sessions when it has at least ``min_sessions``, else ``min_sessions`` equal blocks of its
    trials (an animal recorded as one session). Of the units with a fitted choice (observed, not already held
    out of the cohort, e.g. for cross-validation) it gives
    ``max(1, round(fraction * units))``, drawn at random (``seed``) from all but the first, which anchors the
    initial weights.

    Returns
    -------
    Tensor of bool, shape (animals, T)
        True on the held-out trials (padding excluded); ``fit_rollout(..., holdout=...)``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    session = (torch.cumsum(cohort.session_start.long(), 1) - 1).numpy()
    fitted = cohort.fitted.numpy()
    out = np.zeros(cohort.observed.shape, dtype=bool)
    for a, n in enumerate(cohort.lengths.tolist()):
        if session[a, n - 1] + 1 >= min_sessions:
            unit = session[a, :n]
        else:  # equal blocks of its trials
            unit = np.arange(n) * min_sessions // n
        seen = np.unique(unit[fitted[a, :n]])  # units with a choice to score that cross-validation left us
        candidates = seen[seen > 0]
        if len(candidates) == 0:
            continue
        size = min(len(candidates), max(1, round(fraction * len(seen))))
        held = rng.choice(candidates, size=size, replace=False)
        out[a, :n] = np.isin(unit, held)
    return torch.from_numpy(out)


def early_stop_index(val_loglik: Sequence[float], *, patience: int, eval_every: int = 1,
                     warmup_epochs: int = 0) -> int | None:
    """Index of the evaluation at which early stopping ends a fit, or None if it never does.

    The fit stops at the first evaluation that is the ``patience``-th since the best score so far;
    evaluations before the end of a warm-up (epoch ``warmup_epochs``, evaluated every ``eval_every`` epochs)
    do not count, so a warm-up cannot spend the patience of the optimizer that follows it.
    """
    best, waited = -math.inf, 0
    for i, score in enumerate(val_loglik):
        epoch = (i + 1) * eval_every - 1
        if score > best:
            best, waited = score, 0
        elif epoch >= warmup_epochs:
            waited += 1
        if waited >= patience:
            return i
    return None
