"""The deterministic rollout (sigma = 0, Liu et al. 2025): weights that follow the rule exactly.

:mod:`~learnrules.inference.rollout.rollout` (rollouts and held-out predictions),
:mod:`~learnrules.inference.rollout.rollout_fit` (:func:`fit_rollout`),
:mod:`~learnrules.inference.rollout.rollout_trainer` (its optimizer steps),
:mod:`~learnrules.inference.rollout.parallel_rollout` / :mod:`~learnrules.inference.rollout.sequential_rollout`
(the two solvers), :mod:`~learnrules.inference.rollout.early_stopping` (held-out sessions, patience).
"""

from learnrules.inference.rollout.rollout_fit import RolloutConfig, RolloutResult, fit_rollout

__all__ = ["RolloutConfig", "RolloutResult", "fit_rollout"]
