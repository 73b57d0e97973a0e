"""Held-out predictive scores: one-step-ahead log-likelihood of choices under a fitted rule.

For a rule, its parameters, the weight noise and a prior on each animal's initial weights, the score of a
cohort is ``sum_t log p(y_t | y_<t)``, the one-step-ahead predictive probability of each observed choice
given everything the animal did before (Liu et al.'s held-out log-likelihood when ``sigma = 0`` and the
initial weights are known). With noise (``sigma > 0``) or an uncertain start (``init_sd > 0``) the
predictive integrates over the latent weights; :func:`particle_filter_loglik` estimates it with a bootstrap
particle filter, :func:`rollout_loglik` computes it exactly for the deterministic case.

Monte Carlo error: the particle filter runs ``n_replicates`` independent filters (vectorized together).
The reported per-trial log predictive is the mean over replicates, and ``mc_se`` is the standard error of
that mean for the total (standard deviation over replicates of each replicate's total, divided by
``sqrt(n_replicates)``), computed over whichever trials are scored (so restricting a score keeps an honest
error).

Speed: the filters loop over trials on small tensors, where extra torch threads cost more than they save
(25x slower measured on a loaded 2-core machine); call ``torch.set_num_threads(1)`` first. This module
leaves the thread count alone: raising it again after MKL has run hangs LAPACK in torch 2.13's CPU build.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from learnrules.inference.evaluation.filters import FilterInputs, run_gaussian_filter, run_particle_filter
from learnrules.inference.rollout.rollout import rollout_weights, warn_impossible_choices
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, Params, as_params

__all__ = ["PredictiveScore", "gaussian_filter_loglik", "particle_filter_loglik", "rollout_loglik",
           "score_from_probabilities"]

ArrayLike = float | Sequence[float] | np.ndarray | Tensor


@dataclass(frozen=True)
class PredictiveScore:
    """Per-trial one-step-ahead predictions of a cohort and their log-likelihood.

    Parameters
    ----------
    loglik : ndarray, shape (animals, T)
        ``log p(y_t | y_<t)`` in nats on scored trials, NaN elsewhere (missing choices, padding, trials left
        out of the score).
    p_right : ndarray, shape (animals, T)
        Predictive probability of a right choice (NaN on padding).
    choice : ndarray, shape (animals, T)
        Observed choice, 1 = right (NaN where missing or padding).
    scored : ndarray of bool, shape (animals, T)
        Trials that count in the score.
    subjects : tuple of str
        Animal names, in row order.
    replicates : ndarray, shape (R, animals, T), optional
        Per-replicate log predictive (Monte Carlo runs); None for exact scores.
    method : str
        ``"particle"`` or ``"rollout"``.
    """

    loglik: np.ndarray
    p_right: np.ndarray
    choice: np.ndarray
    scored: np.ndarray
    subjects: tuple[str, ...]
    replicates: np.ndarray | None = None
    method: str = "rollout"

    @property
    def n_trials(self) -> int:
        """Number of scored trials."""
        return int(self.scored.sum())

    @property
    def total(self) -> float:
        """Summed log predictive over scored trials (nats)."""
        return float(np.where(self.scored, self.loglik, 0.0).sum())

    @property
    def nats_per_trial(self) -> float:
        """Mean log predictive per scored trial (nats; 0 is perfect, ``-log 2`` is chance)."""
        return self.total / max(self.n_trials, 1)

    @property
    def bits_per_trial(self) -> float:
        """Mean log predictive per scored trial in bits (``nats_per_trial / log 2``)."""
        return self.nats_per_trial / math.log(2.0)

    @property
    def bits_over_chance(self) -> float:
        """Bits per trial gained over a coin flip (``bits_per_trial + 1``)."""
        return self.bits_per_trial + 1.0

    @property
    def accuracy(self) -> float:
        """Fraction of scored trials whose choice is the predicted side (``p_right > 0.5``)."""
        hit = (self.p_right > 0.5) == (self.choice == 1)
        return float(hit[self.scored].mean()) if self.n_trials else float("nan")

    @property
    def mc_se(self) -> float:
        """Monte Carlo standard error of :attr:`total` (0 for exact scores)."""
        return float(_replicate_se(self.replicates, self.scored).sum() ** 0.5) if self.replicates is not None \
            else 0.0

    def restrict(self, mask: np.ndarray) -> PredictiveScore:
        """Return the score counting only scored trials where ``mask`` (shape (animals, T)) is True."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.scored.shape:
            raise ValueError(f"mask has shape {mask.shape}, expected {self.scored.shape}")
        scored = self.scored & mask
        return replace(self, scored=scored, loglik=np.where(scored, self.loglik, np.nan))

    def per_animal(self) -> pd.DataFrame:
        """Return one row per animal: subject, n_trials, loglik, nats/bits per trial, accuracy, mc_se."""
        n = self.scored.sum(1)
        total = np.where(self.scored, self.loglik, 0.0).sum(1)
        hit = ((self.p_right > 0.5) == (self.choice == 1)) & self.scored
        se_var = _replicate_se(self.replicates, self.scored) if self.replicates is not None else np.zeros(len(n))
        with np.errstate(invalid="ignore", divide="ignore"):
            nats = np.where(n > 0, total / np.maximum(n, 1), np.nan)
            acc = np.where(n > 0, hit.sum(1) / np.maximum(n, 1), np.nan)
        return pd.DataFrame({"subject": list(self.subjects), "n_trials": n.astype(np.int64), "loglik": total,
                             "nats_per_trial": nats, "bits_per_trial": nats / math.log(2.0), "accuracy": acc,
                             "mc_se": np.sqrt(se_var)})


def _replicate_se(replicates: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Per-animal variance of the replicate-mean total, shape (animals,)."""
    totals = np.where(scored[None], replicates, 0.0).sum(-1)  # (R, animals)
    r = totals.shape[0]
    if r < 2:
        return np.full(totals.shape[1], np.nan)
    return totals.var(0, ddof=1) / r


def score_from_probabilities(cohort: CohortTensors, p_right: Tensor | np.ndarray, *,
                             loglik: Tensor | np.ndarray | None = None, replicates: np.ndarray | None = None,
                             method: str = "rollout") -> PredictiveScore:
    """Build a :class:`PredictiveScore` from predictive probabilities ``(animals, T)`` of a right choice.

    Observed, non-padding trials are scored. ``loglik`` (``(animals, T)``, e.g. computed from logits for
    accuracy near 0 and 1) overrides the log-likelihood computed from ``p_right``; ``replicates``
    (``(R, animals, T)`` log predictives) sets it to their mean and carries the Monte Carlo error.
    """
    p = torch.as_tensor(p_right).detach().to(torch.float64).numpy()
    scored = (cohort.observed & cohort.valid).numpy()
    y = cohort.choice.detach().to(torch.float64).numpy()
    tiny = np.finfo(float).tiny
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = np.where(y == 1, np.log(np.maximum(p, tiny)), np.log(np.maximum(1.0 - p, tiny)))
    if loglik is not None:
        ll = torch.as_tensor(loglik).detach().to(torch.float64).numpy()
    if replicates is not None:
        ll = replicates.mean(0)
    warn_impossible_choices(ll, scored, model=f"the {method} predictive")
    return PredictiveScore(loglik=np.where(scored, ll, np.nan),
                           p_right=np.where(cohort.valid.numpy(), p, np.nan),
                           choice=np.where(scored, y, np.nan), scored=scored, subjects=tuple(cohort.subjects),
                           replicates=None if replicates is None else np.where(scored[None], replicates, 0.0),
                           method=method)


def _per_animal_vector(value: ArrayLike, n_animals: int, k: int, dtype: torch.dtype, name: str) -> Tensor:
    out = torch.as_tensor(np.asarray(value, dtype=float), dtype=dtype)
    try:
        return out.expand(n_animals, k).clone()
    except RuntimeError:
        raise ValueError(f"{name} must be a scalar, shape ({k},) or ({n_animals}, {k}); got {tuple(out.shape)}") \
            from None


def _filter_inputs(cohort: CohortTensors, rule: LearningRule, params: Mapping[str, object], sigma: ArrayLike,
                   init_mean: ArrayLike, init_sd: ArrayLike, sigma_session: ArrayLike | None) -> FilterInputs:
    dtype = cohort.features.dtype
    a, k = cohort.n_animals, cohort.n_features
    session = None if sigma_session is None else _per_animal_vector(sigma_session, 1, k, dtype, "sigma_session")[0]
    return FilterInputs(cohort=cohort, rule=rule, params=as_params(params, dtype),
                        sigma=_per_animal_vector(sigma, 1, k, dtype, "sigma")[0], sigma_session=session,
                        init_mean=_per_animal_vector(init_mean, a, k, dtype, "init_mean"),
                        init_sd=_per_animal_vector(init_sd, a, k, dtype, "init_sd"))


def particle_filter_loglik(cohort: CohortTensors, rule: LearningRule, params: Mapping[str, object], *,
                           sigma: ArrayLike, init_mean: ArrayLike, init_sd: ArrayLike,
                           sigma_session: ArrayLike | None = None, n_particles: int = 256, n_replicates: int = 4,
                           ess_threshold: float = 0.5, seed: int | None = None) -> PredictiveScore:
    """Estimate the one-step-ahead predictive log-likelihood with a bootstrap particle filter.

    Particles carry each animal's weights (and, for rules with ``fittable = False``, the rule's latent
    state, advanced with :meth:`~LearningRule.step`; other rules read their contexts from the data through
    :meth:`~LearningRule.contexts`). On every trial the predictive ``p(y_t = 1 | y_<t)`` is the weighted mean
    of ``sigmoid(w . x_t)`` over particles; particles are then reweighted by the observed choice,
    resampled (systematic) when the effective sample size falls below ``ess_threshold * n_particles``, and
    moved by ``w += drift + noise`` (no drift after a missing choice; ``sigma_session`` on the transition
    into a session's first trial). Vectorized over animals, replicates and particles; a loop over trials.

    Parameters
    ----------
    cohort : CohortTensors
        The animals to score (padded tensors).
    rule : LearningRule
        The fitted rule.
    params : Mapping[str, array-like]
        Rule parameters of their declared shapes.
    sigma : float or array-like, shape (K,)
        Per-trial noise sd of the weights.
    init_mean, init_sd : float or array-like, shape (K,) or (animals, K)
        Gaussian prior of each animal's initial weights (``init_sd = 0``: known start).
    sigma_session : float or array-like, optional
        Noise sd on the transition into a session's first trial (None: ``sigma``).
    n_particles : int
        Particles per animal and replicate.
    n_replicates : int
        Independent filters, for the Monte Carlo standard error (``>= 2`` to get one).
    ess_threshold : float
        Resample when ESS / n_particles drops below this.
    seed : int, optional
        Seed of all randomness.

    Returns
    -------
    PredictiveScore
        Scored on every observed, non-padding trial; ``mc_se`` from the replicates.
    """
    if n_particles < 1 or n_replicates < 1:
        raise ValueError(f"n_particles and n_replicates must be positive, got {n_particles}, {n_replicates}")
    inputs = _filter_inputs(cohort, rule, params, sigma, init_mean, init_sd, sigma_session)
    generator = torch.Generator().manual_seed(int(np.random.default_rng(seed).integers(2**62)))
    p_right, log_pred = run_particle_filter(inputs, n_particles=n_particles, n_replicates=n_replicates,
                                            ess_threshold=ess_threshold, generator=generator)
    return score_from_probabilities(cohort, p_right.mean(0), replicates=log_pred.numpy(), method="particle")


def gaussian_filter_loglik(cohort: CohortTensors, rule: LearningRule, params: Mapping[str, object], *,
                           sigma: ArrayLike, init_mean: ArrayLike, init_sd: ArrayLike,
                           sigma_session: ArrayLike | None = None, n_quadrature: int = 32) -> PredictiveScore:
    """Approximate the one-step-ahead predictive with an assumed-density (Gaussian) filter.

    A fast deterministic alternative to :func:`particle_filter_loglik` (no Monte Carlo error, but a
    Gaussian-approximation error): each animal's weight belief stays Gaussian; choices are absorbed by
    moment matching on ``w . x`` with Gauss-Hermite quadrature, the drift is propagated by the unscented
    transform. Exact when ``sigma = 0`` and ``init_sd = 0``. Arguments as in :func:`particle_filter_loglik`;
    rules with ``fittable = False`` are refused.

    Returns
    -------
    PredictiveScore
        ``method = "gaussian"``, ``mc_se = 0``.
    """
    inputs = _filter_inputs(cohort, rule, params, sigma, init_mean, init_sd, sigma_session)
    p_right, log_pred = run_gaussian_filter(inputs, n_quadrature=n_quadrature)
    return score_from_probabilities(cohort, p_right, loglik=log_pred, method="gaussian")


def _stepped_logits(cohort: CohortTensors, rule: LearningRule, params: Params, w: Tensor) -> Tensor:
    """Logits of a rollout stepped trial by trial with :meth:`~LearningRule.step` (state may read the weights)."""
    gate = (cohort.observed & cohort.valid).to(w.dtype)
    x, y, r = cohort.features, cohort.choice, cohort.reward
    state = rule.init_context(params, (cohort.n_animals,), cohort.n_features).to(w.dtype)
    logits = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            logits.append((w * x[:, t]).sum(-1))
            dw, new_state = rule.step(params, state, w, x[:, t], y[:, t], r[:, t])
            state = torch.where(gate[:, t, None] > 0, new_state, state)
            w = w + gate[:, t, None] * dw
    return torch.stack(logits, 1) if logits else cohort.choice.new_zeros(cohort.choice.shape)


def rollout_loglik(cohort: CohortTensors, rule: LearningRule, params: Mapping[str, object], *,
                   init_weights: ArrayLike) -> PredictiveScore:
    """Score a deterministic rollout (``sigma = 0``, known initial weights): the exact predictive.

    The weights start at ``init_weights`` (``(K,)`` shared or ``(animals, K)``) and follow
    ``w_{t+1} = w_t + drift`` after each observed choice (no update after a missing one); rules with
    ``fittable = False`` advance their state with :meth:`~LearningRule.step`.

    Returns
    -------
    PredictiveScore
        Exact (``mc_se = 0``), scored on every observed, non-padding trial.
    """
    dtype = cohort.features.dtype
    prm = as_params(params, dtype)
    w = _per_animal_vector(init_weights, cohort.n_animals, cohort.n_features, dtype, "init_weights")
    x, y = cohort.features, cohort.choice
    if rule.fittable:  # drift from observed history only: solved for all trials at once
        eta = (rollout_weights(cohort, rule, prm, w) * x).sum(-1)
    else:
        eta = _stepped_logits(cohort, rule, prm, w)
    ll = torch.nn.functional.logsigmoid(torch.where(y > 0, eta, -eta))
    return score_from_probabilities(cohort, torch.sigmoid(eta), loglik=ll, method="rollout")
