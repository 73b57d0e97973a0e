"""A fitted rule whatever its method (:class:`FittedModel`), and its one-step-ahead scores on new data."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from learnrules.behavior.trials import TrialData
from learnrules.inference.evaluation.evaluate import PredictiveScore, gaussian_filter_loglik
from learnrules.inference.evaluation.population_predict import pooled_filter_score
from learnrules.inference.result import FitResult
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule
from learnrules.other_rules.registry import make_rule

__all__ = ["DTYPE", "FitPredictor", "FittedModel", "score_summary"]

# Fits and scores run in double precision (see learnrules.inference.variational.fit).
DTYPE = torch.float64


@dataclass(frozen=True)
class FittedModel:
    """A fitted rule and its posterior summaries.

    Parameters
    ----------
    name : str
        Registry name (``zero``, ``reinforce-baseline``, ``mlp``, ...).
    rule : LearningRule or None
        The fitted rule (a trained copy for neural rules; None for the random walk).
    result : FitResult
        Weights, parameters, noise, ELBO trace (for rollout fits: the deterministic trajectory).
    method : {"variational", "rollout"}
        How it was fitted.
    note : str
        Why the fit stopped, or other caveats.
    validation : Mapping[str, float]
        Rollout fits: the best held-out log-likelihood per trial (``heldout_ll``) on the sessions held out of
        the loss for early stopping and their share of the trials (``heldout_share``); with restarts, the
        best of every initialization by seed (``heldout_ll_seed_<seed>``); the weight noise its predictions
        assume (``sigma``, chosen on the same sessions by :func:`choose_sigma`) and their score there
        (``heldout_ll_sigma``). Empty for variational fits.
    """

    name: str
    rule: LearningRule | None
    result: FitResult
    method: str
    note: str = ""
    validation: Mapping[str, float] = field(default_factory=dict)

    @property
    def scoring_rule(self) -> LearningRule:
        """The rule to filter or simulate with (the zero rule for the random walk)."""
        return self.rule if self.rule is not None else make_rule("zero")


def _initial_prior(result: FitResult) -> tuple[np.ndarray, np.ndarray]:
    """Return the population mean and sd of the fitted first-trial weights (sd floored: few animals)."""
    first = result.weights_mean[:, 0]
    spread = first.std(0, ddof=1) if len(first) > 1 else np.full(first.shape[1], 0.5)
    return first.mean(0), np.maximum(spread, 0.1)


@dataclass(frozen=True)
class FitPredictor:
    """Score data one step ahead with a fitted model (the Gaussian assumed-density filter).

    Animals the model was fitted to start from their own posterior of the first weights; new animals
    start from the population of fitted first weights (mean, sd). With per-animal rule parameters a fitted
    animal drifts with its own and a new animal's predictive integrates over the population
    (:func:`~learnrules.inference.evaluation.population_predict.pooled_filter_score`). The filter then
    conditions on each observed choice, so held-out sessions of a fitted animal are predicted from everything
    before them.

    Parameters
    ----------
    model : FittedModel
        The fitted model.
    """

    model: FittedModel

    def score(self, test: TrialData) -> PredictiveScore:
        """Return the one-step-ahead predictive score of every observed trial of ``test``."""
        res = self.model.result
        cohort = CohortTensors.from_trials(test, res.feature_names, dtype=DTYPE)
        pop_mean, pop_sd = _initial_prior(res)
        own = {s: i for i, s in enumerate(res.subjects)}
        mean = np.stack([res.weights_mean[own[s], 0] if s in own else pop_mean for s in cohort.subjects])
        sd = np.stack([res.weights_sd[own[s], 0] if s in own else pop_sd for s in cohort.subjects])
        if res.pooling != "shared":  # each animal's own parameters; a new animal's from the population
            return pooled_filter_score(cohort, self.model.scoring_rule, res, init_mean=mean,
                                       init_sd=np.maximum(sd, 1e-6))
        return gaussian_filter_loglik(cohort, self.model.scoring_rule, res.params, sigma=res.sigma, init_mean=mean,
                                      init_sd=np.maximum(sd, 1e-6), sigma_session=res.sigma_session)


def score_summary(score: PredictiveScore) -> dict[str, float]:
    """Return nats and bits per trial, accuracy and trial count of a score."""
    return {"nats_per_trial": score.nats_per_trial, "bits_per_trial": score.nats_per_trial / math.log(2.0),
            "accuracy": score.accuracy, "n_trials": score.n_trials}
