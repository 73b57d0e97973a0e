"""A scikit-learn-style estimator over :func:`learnrules.inference.variational.fit`."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator

from learnrules.behavior.trials import TrialData
from learnrules.inference.result import FitResult
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule

__all__ = ["LearningRuleModel"]


class LearningRuleModel(BaseEstimator):
    """Latent-weight GLM with a learning rule, fit by structured variational inference.

    Parameters
    ----------
    rule : LearningRule or None
        Shared learning rule (None = random walk, PsyTrack's model).
    features : tuple of str
        GLM features.
    config : FitConfig or None
        Fit options (None = defaults).
    seed : int or None
        Seed passed to :func:`fit`.
    progress : bool or None
        Progress bar (None = only on a terminal).

    Attributes
    ----------
    result_ : FitResult
        The fit, after :meth:`fit`.

    Notes
    -----
    ``predict_proba`` and ``score`` use the posterior-mean weights of the *fitted* animals, so ``data`` must
    hold the same subjects with the same numbers of trials (in-sample use). For held-out animals or sessions use
    the evaluation module's filters.
    """

    def __init__(self, rule: LearningRule | None = None, *, features: tuple[str, ...] = ("bias", "stimulus"),
                 config: FitConfig | None = None, seed: int | None = None, progress: bool | None = None) -> None:
        self.rule = rule
        self.features = features
        self.config = config
        self.seed = seed
        self.progress = progress

    def fit(self, data: TrialData | CohortTensors, y: None = None) -> LearningRuleModel:
        """Fit the model to ``data``; return ``self``."""
        self.result_: FitResult = fit(data, rule=self.rule, features=tuple(self.features), config=self.config,
                                      seed=self.seed, progress=self.progress)
        return self

    def _cohort(self, data: TrialData | CohortTensors) -> CohortTensors:
        if not hasattr(self, "result_"):
            raise ValueError("this LearningRuleModel is not fitted yet: call fit(data) first")
        cohort = data if isinstance(data, CohortTensors) else CohortTensors.from_trials(data, tuple(self.features))
        res = self.result_
        if tuple(cohort.subjects) != res.subjects or not np.array_equal(cohort.lengths.numpy(), res.lengths):
            raise ValueError(f"data must hold the fitted subjects {list(res.subjects)} with lengths "
                             f"{res.lengths.tolist()}; got {list(cohort.subjects)} {cohort.lengths.tolist()}")
        return cohort

    def _p_right(self, cohort: CohortTensors) -> np.ndarray:
        logits = (torch.as_tensor(self.result_.weights_mean, dtype=cohort.features.dtype) * cohort.features).sum(-1)
        return torch.sigmoid(logits).numpy()

    def predict_proba(self, data: TrialData | CohortTensors) -> np.ndarray:
        """Return ``[p(left), p(right)]`` per real trial, animals concatenated in order, shape ``(n, 2)``."""
        cohort = self._cohort(data)
        p = self._p_right(cohort)[cohort.valid.numpy()]
        return np.stack([1 - p, p], axis=1)

    def score(self, data: TrialData | CohortTensors, y: None = None) -> float:
        """Return the mean log-likelihood per observed trial (nats) under the posterior-mean weights."""
        cohort = self._cohort(data)
        p = np.clip(self._p_right(cohort), 1e-12, 1 - 1e-12)
        y_obs = cohort.choice.numpy()
        ll = y_obs * np.log(p) + (1 - y_obs) * np.log1p(-p)
        live = (cohort.observed & cohort.valid).numpy()
        return float(ll[live].mean())
