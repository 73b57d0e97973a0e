"""Fit a learning-rule model: structured variational posterior over weights, ELBO gradient on hyperparameters.

For given hyperparameters ``theta`` (log noise sd, optional per-animal initial weights, unconstrained rule
parameters) the optimal Gaussian ``q(w)`` of every animal is found by Gauss-Newton steps through banded
solves (:func:`~learnrules.inference.variational.vi.update_posterior`, warm-started). With ``q`` at its optimum
the partial gradient of the ELBO in ``theta`` at fixed ``q`` is the gradient of the collapsed bound (envelope
theorem), so
``theta`` follows L-BFGS (or Adam) on ``ELBO + log prior(rule parameters)``. Convergence is judged on window
means of the ELBO trace. Rule parameters and noise then get a Laplace posterior: the Hessian of the collapsed
objective in the unconstrained space, by central differences of its envelope gradient.

A neural rule (:class:`~learnrules.models.neural.MLPRule`, :class:`~learnrules.models.neural.GRURule`,
:class:`~learnrules.models.hybrid.HybridRule`) is fitted the same way: the tensors of a copy of its network
are extra leaves of ``theta`` (shared by all animals; only the output layer has a prior, see
``FitConfig.network_prior_sd``), stepped with the other hyperparameters by
full-batch L-BFGS to a tolerance, or by Adam, optionally on mini-batches of animals (each step re-optimizes
the batch's posteriors, warm-started, and uses their ELBO scaled by ``N / B``; all posteriors are refreshed at
the end). ``start=`` warm-starts the hyperparameters at an earlier fit's. Network tensors get no Laplace
posterior; the trained network comes back in
``FitResult.rule_state`` / ``FitResult.rule_config`` and the caller's rule is never modified.

The objective and the steps on it are :mod:`learnrules.inference.variational.optimize`'s.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyro
import torch

from learnrules.behavior.trials import TrialData
from learnrules.inference.result import FitResult
from learnrules.inference.variational.laplace import (
    LaplacePosterior,
    laplace_covariance,
    parameter_table,
    weight_covariance,
)
from learnrules.inference.variational.optimize import Objective, optimize
from learnrules.inference.variational.theta import Theta
from learnrules.inference.variational.vi import Posterior
from learnrules.models.dynamics import DynamicsConfig
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import NeuralRule
from learnrules.models.rule import LearningRule

__all__ = ["FitConfig", "fit"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """Options of :func:`fit`.

    Parameters
    ----------
    dynamics : DynamicsConfig
        Priors of the weight dynamics and starting noise values.
    learn_sigma, learn_sigma_session : bool
        Learn the noise sd per feature (session-start noise only when ``dynamics.sigma_session`` is set).
    learn_init_mean : bool
        Learn each animal's initial-weight mean (else fixed at ``dynamics.init_mean``).
    optimizer : {"lbfgs", "adam"}
        Optimizer of the hyperparameters and of a neural rule's network: full-batch L-BFGS with a strong-Wolfe
        line search (the default; the fit stops on ``tol`` / ``grad_tol``), or Adam (optionally on
        mini-batches of animals, for cohorts whose posteriors do not fit in memory at once).
    lr : float
        Learning rate (L-BFGS: initial step; Adam: step size on the unconstrained scale).
    max_steps : int
        Maximum number of hyperparameter steps.
    window : int
        Window of the convergence check on ELBO window means.
    tol : float
        Converged when consecutive window means differ by less than ``tol * |ELBO|``.
    grad_tol : float
        Converged when no gradient entry of the (scaled) objective exceeds this (per trial with a network).
    history_size : int
        Curvature pairs kept by L-BFGS.
    inner_max_iter, inner_tol : int, float
        Gauss-Newton iterations and relative tolerance of the posterior update.
    gh_points : int
        Gauss-Hermite nodes.
    animal_chunk : int or None
        Update the posteriors of this many animals at a time (bounds memory; None = all at once).
    band_level : float
        Mass of the credible bands and intervals.
    param_posterior : {"laplace", "none"}
        Laplace posterior of rule parameters and noise, or point estimates only.
    log_every : int
        Log the ELBO every this many steps.
    network_prior_sd : float or None
        Sd of a Normal prior on the output layer of a neural rule's network, centred at its starting values
        (shrinks the network towards the rule it starts as); None: no prior.
    network_lr : float
        Adam step size of the network tensors of a neural rule (``optimizer="adam"``).
    batch_size : int or None
        Animals per Adam step (a random subset, seeded by ``fit``'s ``seed``); None = all. Adam only. A
        mini-batched fit runs to ``max_steps`` or ``time_budget_s`` (its ELBO trace is a noisy estimate).
    time_budget_s : float or None
        Stop the optimization after the step that exceeds this wall time (not counted as converged).
    lr_decay : float
        Multiplicative decay of the Adam step sizes after every step (1 = none); damps the end-point noise of
        stochastic (mini-batched) network training.
    max_elbo_drop : float or None
        Full-batch Adam: a step after which the ELBO falls by more than this fraction of its magnitude is
        undone (point and posterior), the step sizes halved and Adam's moments reset. None = off.
    max_batch_elbo_drop : float or None
        Mini-batched Adam: the same, judged on the batch's animals, whose ELBO after the step is compared with
        their own ELBO when they were last updated. Looser than ``max_elbo_drop`` because those values are some
        steps old: in a healthy 20-animal fit (batch 2, relu MLP) the largest such fall was 2.6%; the step that
        began a tanh MLP's collapse on the same cohort fell by 255%, those after it by up to 18,700% when not
        undone. None = off.
    """

    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    learn_sigma: bool = True
    learn_sigma_session: bool = True
    learn_init_mean: bool = False
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    lr: float = 1.0
    max_steps: int = 200
    window: int = 2
    tol: float = 1e-6
    grad_tol: float = 1e-9
    history_size: int = 20
    inner_max_iter: int = 50
    inner_tol: float = 1e-8
    gh_points: int = 20
    animal_chunk: int | None = 10
    band_level: float = 0.9
    param_posterior: Literal["laplace", "none"] = "laplace"
    log_every: int = 10
    network_prior_sd: float | None = None
    network_lr: float = 1e-2
    batch_size: int | None = None
    time_budget_s: float | None = None
    lr_decay: float = 1.0
    max_elbo_drop: float | None = 0.01
    max_batch_elbo_drop: float | None = 0.05

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        for name in ("max_elbo_drop", "max_batch_elbo_drop"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {getattr(self, name)}")


def _as_cohort(data: TrialData | CohortTensors, features: tuple[str, ...]) -> CohortTensors:
    # Fits run in double precision whatever the input's or the default dtype: the posterior precision carries
    # 1 / sigma^2, which float32 cannot factor once sigma is small (a random walk failed at sigma 4.5e-4).
    if isinstance(data, CohortTensors):
        return data.to(torch.float64)
    return CohortTensors.from_trials(data, features, dtype=torch.float64)


def fit(data: TrialData | CohortTensors, *, rule: LearningRule | None = None,
        features: tuple[str, ...] = ("bias", "stimulus"), config: FitConfig | None = None,
        seed: int | None = None, progress: bool | None = None, start: FitResult | None = None,
        pooling: Literal["shared", "hierarchical", "independent"] = "shared", population: object = None,
        groups: Mapping[str, str] | None = None) -> FitResult:
    """Fit weight trajectories, noise and the rule's parameters by structured variational inference.

    Parameters
    ----------
    data : TrialData or CohortTensors
        Trials of one or more animals (ragged lengths allowed).
    rule : LearningRule or None
        The shared learning rule; None (or a ``ZeroRule``) is the random walk (PsyTrack's model). A neural
        rule's network is trained on a copy (see ``FitResult.rule_state`` and ``FitResult.neural_rule()``).
    features : tuple of str
        Feature names (ignored when ``data`` is already a CohortTensors).
    config : FitConfig, optional
        Options; defaults to ``FitConfig()``.
    seed : int, optional
        Seed for Pyro/torch (the fit itself is deterministic).
    progress : bool, optional
        Show a progress bar; default: only when stderr is a terminal.
    start : FitResult, optional
        A fit of the same animals and features to start from (its noise, initial-weight means and same-named
        rule parameters, see :meth:`Theta.warm_start`, and its weight trajectories as the first posterior
        solve's start): a hybrid rule starts at its parametric rule's fit.
    pooling : {"shared", "hierarchical", "independent"}
        One set of rule parameters for all animals, or each animal its own: partially pooled through a fitted
        population, or independent (parametric rules only; see
        :func:`~learnrules.inference.variational.pooling.fit_pooled`, which takes ``population``, a
        :class:`~learnrules.inference.variational.population.PopulationConfig`, and ``groups``).

    Returns
    -------
    FitResult
        Posterior summaries, parameters with intervals, ELBO trace and timings.

    Raises
    ------
    FloatingPointError
        If the objective becomes NaN/inf, with the step and the likely cause. With L-BFGS, a failure inside a
        line search first restarts the method from the last accepted point (logged; at most 3 times).
    """
    if pooling != "shared" or population is not None or groups is not None:
        from learnrules.inference.variational.pooling import fit_pooled  # it builds on this module
        if start is not None:
            raise ValueError("start= is not available with per-animal pooling")
        return fit_pooled(data, rule=rule, pooling=pooling, features=features, config=config,
                          population=population, groups=groups, seed=seed, progress=progress)
    config = config or FitConfig()
    if rule is not None and not rule.fittable:
        raise ValueError(f"rule {rule.name} is not fittable (its state depends on the latent weights)")
    if seed is not None:
        pyro.set_rng_seed(seed)
    progress = sys.stderr.isatty() if progress is None else progress
    began = time.perf_counter()
    cohort = _as_cohort(data, tuple(features))
    if isinstance(rule, NeuralRule):
        rule = rule.copy()  # trained in place below: never the caller's object
        rule.network.to(cohort.features.dtype)
    theta = Theta(rule, cohort, config)
    if start is not None:
        theta.warm_start(start)
    objective = Objective(rule, theta, cohort, config, seed=seed)
    if start is not None and start.weights_mean.shape == tuple(cohort.features.shape):
        objective.init = torch.as_tensor(start.weights_mean)
    trace, converged, n_steps = optimize(objective, config, progress)
    laplace = LaplacePosterior(np.zeros((0, 0)), (), np.zeros((0, 0)), {})
    if config.param_posterior == "laplace" and theta.laplace_leaves():
        laplace = laplace_covariance(objective, level=config.band_level)
    elapsed = time.perf_counter() - began
    logger.info("fit done: %d steps, ELBO %.4f, converged %s, %.2f s", n_steps, trace[-1], converged, elapsed)
    return _result(rule, cohort, theta, objective.post, trace, converged, n_steps, elapsed, laplace, config)


def _result(rule: LearningRule | None, cohort: CohortTensors, theta: Theta, post: Posterior, trace: list[float],
            converged: bool, n_steps: int, elapsed: float, laplace: LaplacePosterior, config: FitConfig
            ) -> FitResult:
    hyper = theta.hyper().detach()
    valid = cohort.valid.numpy()
    session = np.where(valid, np.cumsum(cohort.session_start.numpy(), axis=1) - 1, -1)
    mean = post.mean.numpy() * valid[..., None]
    wcov = weight_covariance(post.cov.numpy(), laplace) * valid[..., None, None]  # hyperparameter spread too
    sd = np.sqrt(np.clip(np.diagonal(wcov, axis1=-2, axis2=-1), 0, None))
    table = parameter_table(theta, laplace, level=config.band_level, rule=rule)
    neural = isinstance(rule, NeuralRule)
    state = {k: v.detach().cpu().numpy().copy() for k, v in rule.state_dict().items()} if neural else {}
    return FitResult(
        rule_name="RandomWalk" if rule is None else rule.name, feature_names=tuple(cohort.feature_names),
        subjects=tuple(cohort.subjects), weights_mean=mean, weights_sd=sd, weights_cov=wcov, valid=valid,
        session=session, sigma=hyper.sigma.numpy(),
        sigma_session=None if hyper.sigma_session is None else hyper.sigma_session.numpy(),
        sigma_init=hyper.sigma_init.numpy(), init_mean=hyper.init_mean.numpy(),
        params={k: v.numpy() for k, v in hyper.params.items()}, param_names=laplace.names, param_cov=laplace.cov,
        param_table=table, elbo_trace=np.asarray(trace), elbo=trace[-1], converged=converged, n_steps=n_steps,
        elapsed_s=elapsed, band_level=config.band_level, rule_config=rule.config.to_dict() if neural else None,
        rule_state=state)
