"""Library-level steps behind the command line: build a rule by name, fit it, score held-out data.

Every fit comes back as a :class:`FittedModel` holding a :class:`~learnrules.inference.result.FitResult`,
whatever the method, so writing outputs, scoring and plotting never branch on it:

- parametric rules and the random walk (``zero``): the structured variational fit
  (:func:`learnrules.inference.fit`);
- neural rules (``mlp``, ``gru``): the same variational fit with the network's tensors trained by Adam
  under a wall-time budget (default), or the deterministic rollout fit (``method="rollout"``: sigma = 0,
  Liu et al. 2025; :func:`learnrules.inference.rollout_fit.fit_rollout`, :data:`LBFGS_ROLLOUT_CONFIG`), whose
  rolled-out weights fill the result with zero posterior sd and zero noise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from learnrules.behavior.trials import TrialData
from learnrules.inference.early_stopping import holdout_sessions
from learnrules.inference.evaluate import PredictiveScore, gaussian_filter_loglik
from learnrules.inference.fit import FitConfig, fit
from learnrules.inference.result import FitResult
from learnrules.inference.rollout import rollout_weights
from learnrules.inference.rollout_fit import RolloutConfig, RolloutResult, fit_rollout
from learnrules.models.dynamics import DynamicsConfig
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import Activation, GRURule, MLPRule, NeuralRule
from learnrules.models.rule import LearningRule
from learnrules.other_rules.registry import RULES, make_rule

__all__ = ["ADAM_ROLLOUT_CONFIG", "LBFGS_ROLLOUT_CONFIG", "NEURAL_FIT_CONFIG", "NEURAL_RULES", "RULE_NAMES",
           "FittedModel", "FitPredictor", "build_rule", "fit_model", "parse_list", "rollout_to_result"]

logger = logging.getLogger(__name__)

NEURAL_RULES = ("mlp", "gru")
# Variational settings for neural rules, as measured in bench/neural_vi.py: Adam on mini-batches of 2 animals,
# 2 Gauss-Newton iterations per step (warm-started), the time budget ends the fit.
NEURAL_FIT_CONFIG = FitConfig(dynamics=DynamicsConfig(sigma=0.05, sigma_init=2.0), optimizer="adam", lr=0.05,
                              network_lr=1e-2, inner_max_iter=2, param_posterior="none", max_steps=100_000,
                              log_every=25, window=25, batch_size=2)
# Rollout settings (bench/results/rollout_method_*.md): both stop after 5 epochs without improvement on 20% of
# the sessions, held out of the loss (:func:`holdout_sessions`), and keep their best state. MLP rules: 50
# epochs of Liu et al.'s schedule (Adam lr 3e-3, backprop truncated every 100 trials, one step per epoch),
# then full-batch L-BFGS, which overfits after its best. GRU rules: Adam with one step per 100 trials (a GRU's
# whole-sequence rollout steps through nn.GRU: ~10 s per epoch on 20,000 trials, too slow for L-BFGS).
LBFGS_ROLLOUT_CONFIG = RolloutConfig(epochs=10_000, optimizer="lbfgs", lbfgs_iter=10, warmup_epochs=50, lr=3e-3,
                                     tbptt=100, update="sequence", patience=5, log_every=10)
ADAM_ROLLOUT_CONFIG = RolloutConfig(epochs=10_000, lr=3e-3, tbptt=100, update="chunk", patience=5, log_every=10)
# Weight noise levels a rollout fit's predictions may assume, chosen on its held-out sessions (choose_sigma).
SIGMA_GRID = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
RULE_NAMES = (*RULES, *NEURAL_RULES)
_DTYPE = torch.float64


def parse_list(text: str, *, what: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    """Split a comma-separated option into names, checking them against ``allowed``.

    Raises
    ------
    ValueError
        If the list is empty, has duplicates, or holds a name outside ``allowed``.
    """
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError(f"{what}: empty list {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: duplicate names in {text!r}")
    if allowed is not None:
        bad = [n for n in names if n not in allowed]
        if bad:
            raise ValueError(f"unknown {what} {bad[0]!r}; known: {', '.join(allowed)}")
    return names


def build_rule(name: str, n_features: int, *, seed: int | None = None, hidden: Sequence[int] = (32, 32),
               activation: Activation = "relu") -> LearningRule | None:
    """Return the rule called ``name`` (None for ``zero``, the random walk), with default settings.

    ``hidden`` (layer widths) and ``activation`` shape the update network of ``mlp`` and ``gru``; parametric
    rules ignore them.
    """
    if name == "zero":
        return None
    if name == "mlp":
        return MLPRule(n_features, hidden=tuple(hidden), activation=activation, seed=seed)
    if name == "gru":
        return GRURule(n_features, hidden=tuple(hidden), activation=activation, seed=seed)
    return make_rule(name)


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


def rollout_to_result(fitted: RolloutResult, cohort: CohortTensors, *, name: str, sigma: float = 0.0) -> FitResult:
    """Express a deterministic rollout fit as a :class:`FitResult` (posterior sd 0).

    ``sigma`` is the weight noise its predictions assume (:func:`choose_sigma`); the weights are the rollout's.
    """
    weights = rollout_weights(cohort, fitted.rule, fitted.params, fitted.init_weights)
    valid = cohort.valid.numpy()
    mean = weights.numpy() * valid[..., None]
    k = cohort.n_features
    loglik = float(fitted.train_loglik[cohort.fitted].sum())  # not the cohort's held-out trials
    trace = -np.asarray(fitted.losses) * int(cohort.fitted.sum())  # log-likelihood per epoch (sigma = 0: ELBO = LL)
    return FitResult(
        rule_name=name, feature_names=tuple(cohort.feature_names), subjects=tuple(cohort.subjects),
        weights_mean=mean, weights_sd=np.zeros_like(mean), weights_cov=np.zeros((*mean.shape, k)), valid=valid,
        session=np.where(valid, np.cumsum(cohort.session_start.numpy(), axis=1) - 1, -1),
        sigma=np.full(k, float(sigma)), sigma_session=None, sigma_init=np.zeros(k),
        init_mean=fitted.init_weights.numpy(), elbo_trace=np.append(trace, loglik), elbo=loglik,
        converged=fitted.converged, n_steps=fitted.n_steps, elapsed_s=fitted.elapsed_s)


def choose_sigma(fitted: RolloutResult, cohort: CohortTensors, holdout: torch.Tensor,
                 grid: Sequence[float] = SIGMA_GRID) -> dict[float, float]:
    """Score a rollout fit's predictions on ``holdout`` trials for each weight noise sigma of ``grid``.

    A rollout fit's weights follow its rule exactly, so a drift the rule misses accumulates; predicting with the
    Gaussian filter at sigma > 0 lets the weights follow the choices (rat W053, 3 folds x 3 seeds: the rollout
    MLP's held-out score rises from -0.6353 to -0.6262 nats/trial and its spread across seeds falls from 0.014
    to 0.003; bench/results/session_cv_sigma_rat.md). Returns the mean log-likelihood per held-out trial by
    sigma (each a filter pass: ~6 s on 20,000 trials with the (32, 32) MLP).
    """
    w0 = fitted.init_weights.numpy()
    scored = (holdout & cohort.fitted).numpy()  # as the early-stopping score: never the cohort's held-out trials
    scores = {}
    for sigma in grid:
        score = gaussian_filter_loglik(cohort, fitted.rule, fitted.params, sigma=np.full(cohort.n_features, sigma),
                                       init_mean=w0, init_sd=np.full_like(w0, 1e-6))
        scores[float(sigma)] = float(score.loglik[scored].mean())
    return scores


def _fit_neural(make: Callable[[int | None], NeuralRule], name: str, cohort: CohortTensors, *, seed: int | None,
                budget_s: float, progress: bool | None, restarts: int) -> FittedModel:
    """Fit ``restarts`` initializations (seeds ``seed``, ``seed + 1``, ...) by rollout; keep the best one.

    "Best" is judged on the sessions held out of the loss for early stopping, the same for every fit.
    """
    holdout = holdout_sessions(cohort, seed=seed)
    share = float(holdout.sum() / cohort.fitted.sum())
    fits = {}
    for i in range(restarts):
        run_seed = None if seed is None else seed + i
        rule = make(run_seed)
        config = ADAM_ROLLOUT_CONFIG if isinstance(rule, GRURule) else LBFGS_ROLLOUT_CONFIG
        fitted = fit_rollout(cohort, rule, config=replace(config, time_budget_s=budget_s), holdout=holdout,
                             seed=run_seed, progress=progress)
        fits[run_seed if run_seed is not None else i] = fitted
        logger.info("%s rollout fit (seed %s): %d epochs, %s, best held-out LL %.5f", name, run_seed,
                    fitted.n_steps, fitted.stop_reason, max(fitted.val_loglik, default=math.nan))
    scores = {k: max(f.val_loglik, default=-math.inf) for k, f in fits.items()}
    chosen = max(scores, key=scores.get)
    fitted = fits[chosen]
    by_sigma = choose_sigma(fitted, cohort, holdout)
    sigma = max(by_sigma, key=by_sigma.get)
    note = (f"deterministic rollout fit (sigma = 0), {fitted.n_steps} epochs, stopped by {fitted.stop_reason}; "
            f"{share:.0%} of the fitted trials (whole sessions) held out for early stopping, "
            f"best held-out LL {scores[chosen]:.4f} nats/trial; predictions with sigma = {sigma:g} "
            f"(held-out LL {by_sigma[sigma]:.4f})")
    validation = {"heldout_ll": scores[chosen], "heldout_share": share, "sigma": sigma,
                  "heldout_ll_sigma": by_sigma[sigma]}
    if restarts > 1:
        note += f"; best of {restarts} initializations (seed {chosen})"
        validation |= {f"heldout_ll_seed_{k}": v for k, v in scores.items()}
    return FittedModel(name, fitted.rule, rollout_to_result(fitted, cohort, name=name, sigma=sigma), "rollout", note,
                       validation)


def fit_model(data: TrialData, name: str, *, features: Sequence[str] = ("bias", "stimulus"),
              seed: int | None = None, budget_s: float = 120.0, config: FitConfig | None = None,
              method: Literal["variational", "rollout"] = "variational", progress: bool | None = None,
              hidden: Sequence[int] = (32, 32), activation: Activation = "relu", restarts: int = 1) -> FittedModel:
    """Fit the rule called ``name`` to ``data``.

    Parameters
    ----------
    data : TrialData
        The animals.
    name : str
        One of :data:`RULE_NAMES`.
    features : sequence of str
        Design-matrix features.
    seed : int, optional
        Seed of the fit (and of a neural rule's initialization).
    budget_s : float
        Wall-time budget of a neural rule's fit, seconds.
    config : FitConfig, optional
        Options of the variational fit of a parametric rule (neural rules use :data:`NEURAL_FIT_CONFIG` with
        ``time_budget_s = budget_s``).
    method : {"variational", "rollout"}
        How to fit a neural rule (parametric rules are always fitted variationally).
    progress : bool, optional
        Progress bars (None: when stderr is a terminal).
    hidden : sequence of int
        Hidden-layer widths of a neural rule's update network.
    activation : {"relu", "tanh", "silu"}
        Its nonlinearity (tanh bounds the update, but the tanh MLP fitted simulated cohorts worse; see the
        README).
    restarts : int
        Rollout fits of a neural rule: initializations to fit (seeds ``seed``, ``seed + 1``, ...; each with
        ``budget_s``), keeping the best on the sessions held out for early stopping.

    Returns
    -------
    FittedModel
    """
    if name not in RULE_NAMES:
        raise ValueError(f"unknown rule {name!r}; known rules: {', '.join(RULE_NAMES)}")
    cohort = CohortTensors.from_trials(data, tuple(features), dtype=_DTYPE)
    if method not in ("variational", "rollout"):
        raise ValueError(f"method must be 'variational' or 'rollout', got {method!r}")
    if restarts < 1 or (restarts > 1 and not (name in NEURAL_RULES and method == "rollout")):
        raise ValueError(f"restarts must be >= 1, and > 1 only for a neural rule fitted by method='rollout' "
                         f"(its held-out sessions choose between the fits), got {restarts} for {name!r} / {method}")
    if name in NEURAL_RULES and method == "rollout":
        def make(run_seed: int | None) -> NeuralRule:
            return build_rule(name, cohort.n_features, seed=run_seed, hidden=hidden, activation=activation)
        return _fit_neural(make, name, cohort, seed=seed, budget_s=budget_s, progress=progress, restarts=restarts)
    rule = build_rule(name, cohort.n_features, seed=seed, hidden=hidden, activation=activation)
    if name in NEURAL_RULES:
        config = replace(NEURAL_FIT_CONFIG, time_budget_s=budget_s,
                         batch_size=min(2, cohort.n_animals))
    result = fit(cohort, rule=rule, config=config, seed=seed, progress=progress)
    if name in NEURAL_RULES:
        rule = result.neural_rule()
    note = "" if result.converged else f"not converged after {result.n_steps} steps ({result.elapsed_s:.0f} s)"
    return FittedModel(name, rule, result, "variational", note)


def _initial_prior(result: FitResult) -> tuple[np.ndarray, np.ndarray]:
    """Return the population mean and sd of the fitted first-trial weights (sd floored: few animals)."""
    first = result.weights_mean[:, 0]
    spread = first.std(0, ddof=1) if len(first) > 1 else np.full(first.shape[1], 0.5)
    return first.mean(0), np.maximum(spread, 0.1)


@dataclass(frozen=True)
class FitPredictor:
    """Score data one step ahead with a fitted model (the Gaussian assumed-density filter).

    Animals the model was fitted to start from their own posterior of the first weights; new animals
    start from the population of fitted first weights (mean, sd). The filter then conditions on each
    observed choice, so held-out sessions of a fitted animal are predicted from everything before them.

    Parameters
    ----------
    model : FittedModel
        The fitted model.
    """

    model: FittedModel

    def score(self, test: TrialData) -> PredictiveScore:
        """Return the one-step-ahead predictive score of every observed trial of ``test``."""
        res = self.model.result
        cohort = CohortTensors.from_trials(test, res.feature_names, dtype=_DTYPE)
        pop_mean, pop_sd = _initial_prior(res)
        own = {s: i for i, s in enumerate(res.subjects)}
        mean = np.stack([res.weights_mean[own[s], 0] if s in own else pop_mean for s in cohort.subjects])
        sd = np.stack([res.weights_sd[own[s], 0] if s in own else pop_sd for s in cohort.subjects])
        params = {} if isinstance(self.model.rule, NeuralRule) else res.params
        return gaussian_filter_loglik(cohort, self.model.scoring_rule, params, sigma=res.sigma, init_mean=mean,
                                      init_sd=np.maximum(sd, 1e-6), sigma_session=res.sigma_session)


def score_summary(score: PredictiveScore) -> dict[str, float]:
    """Return nats and bits per trial, accuracy and trial count of a score."""
    return {"nats_per_trial": score.nats_per_trial, "bits_per_trial": score.nats_per_trial / math.log(2.0),
            "accuracy": score.accuracy, "n_trials": score.n_trials}
