"""Fit a learning-rule model: structured variational posterior over weights, ELBO gradient on hyperparameters.

For given hyperparameters ``theta`` (log noise sd, optional per-animal initial weights, unconstrained rule
parameters) the optimal Gaussian ``q(w)`` of every animal is found by Gauss-Newton steps through banded
solves (:func:`learnrules.inference.vi.update_posterior`, warm-started). With ``q`` at its optimum the partial
gradient of the ELBO in ``theta`` at fixed ``q`` is the gradient of the collapsed bound (envelope theorem), so
``theta`` follows L-BFGS (or Adam) on ``ELBO + log prior(rule parameters)``. Convergence is judged on window
means of the ELBO trace. Rule parameters and noise then get a Laplace posterior: the Hessian of the collapsed
objective in the unconstrained space, by central differences of its envelope gradient.

A neural rule (:class:`~learnrules.models.neural.MLPRule`, :class:`~learnrules.models.neural.GRURule`) is
fitted the same way: the tensors of a copy of its network are extra leaves of ``theta`` (shared by all
animals, no prior), always optimized by Adam, optionally on mini-batches of animals (each step re-optimizes
the batch's posteriors, warm-started, and uses their ELBO scaled by ``N / B``; all posteriors are refreshed at
the end). Network tensors get no Laplace posterior; the trained network comes back in
``FitResult.rule_state`` / ``FitResult.rule_config`` and the caller's rule is never modified.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from learnrules.behavior.trials import TrialData
from learnrules.inference.laplace import LaplacePosterior, laplace_covariance, parameter_table
from learnrules.inference.result import FitResult
from learnrules.inference.theta import Theta
from learnrules.inference.vi import Posterior, elbo, linearize, update_posterior
from learnrules.models.dynamics import DynamicsConfig, drift_sequence
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import NeuralRule, rule_network
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
        Optimizer of the hyperparameters.
    lr : float
        Learning rate (L-BFGS: initial step; Adam: step size on the unconstrained scale).
    max_steps : int
        Maximum number of hyperparameter steps.
    window : int
        Window of the convergence check on ELBO window means.
    tol : float
        Converged when consecutive window means differ by less than ``tol * |ELBO|``.
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
    network_lr : float
        Adam step size of the network tensors of a neural rule. With a neural rule the optimizer is always
        Adam; its other hyperparameters use ``lr`` when ``optimizer="adam"`` and ``network_lr`` otherwise.
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
    inner_max_iter: int = 50
    inner_tol: float = 1e-8
    gh_points: int = 20
    animal_chunk: int | None = 10
    band_level: float = 0.9
    param_posterior: Literal["laplace", "none"] = "laplace"
    log_every: int = 10
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


def _uses_adam(rule: LearningRule | None, config: FitConfig) -> bool:
    return config.optimizer == "adam" or (rule is not None and rule_network(rule) is not None)


def _subset(post: Posterior, idx: torch.Tensor) -> Posterior:
    return Posterior(post.mean[idx], post.cov[idx], post.cross[idx], post.logdet[idx], post.elbo[idx],
                     post.likelihood[idx], post.n_iter)


def _scatter(post: Posterior, idx: torch.Tensor, part: Posterior) -> Posterior:
    """Return ``post`` with the animals at ``idx`` replaced by ``part`` (the input is not modified)."""
    fields = [getattr(post, n).index_copy(0, idx, getattr(part, n))
              for n in ("mean", "cov", "cross", "logdet", "elbo", "likelihood")]
    return Posterior(*fields, part.n_iter)


class _Objective:
    """Collapsed objective: re-optimizes q (warm start) and returns -(ELBO + log prior) / n_trials.

    With ``batch_size`` set (and ``full`` False) each call draws a random subset of animals, re-optimizes only
    their posteriors and scales their ELBO by ``N / B`` (an unbiased estimate of the total).
    """

    def __init__(self, rule: LearningRule | None, theta: Theta, data: CohortTensors, config: FitConfig,
                 seed: int | None = None) -> None:
        self.rule, self.theta, self.data, self.config = rule, theta, data, config
        self.post: Posterior | None = None
        self.n_trials = max(int(data.fitted.sum()), 1)
        self.scale = float(self.n_trials) if _uses_adam(rule, config) else 1.0
        self.step = 0
        self.last_elbo = float("nan")
        self.batch_change: tuple[float, float] | None = None  # mini-batch: its animals' ELBO before, after
        self.full = not (_uses_adam(rule, config) and config.batch_size and config.batch_size < data.n_animals)
        self.rng = np.random.default_rng(seed)

    def _batch(self) -> torch.Tensor | None:
        if self.full or self.post is None:
            return None
        n = self.data.n_animals
        return torch.as_tensor(np.sort(self.rng.choice(n, self.config.batch_size, replace=False)))

    def __call__(self) -> torch.Tensor:
        cfg = self.config
        hyper, data, start, idx = self.theta.hyper(), self.data, self.post, self._batch()
        if idx is not None:
            data, start = data.select(idx.tolist()), _subset(self.post, idx)
            hyper = hyper.select(idx)
        try:
            post = update_posterior(self.rule, hyper, data, start, max_iter=cfg.inner_max_iter,
                                    tol=cfg.inner_tol, n_points=cfg.gh_points, chunk=cfg.animal_chunk)
        except (torch.linalg.LinAlgError, RuntimeError) as err:
            raise FloatingPointError(self._message(f"the posterior update failed ({err})")) from err
        lin = linearize(self.rule, hyper, data, post.mean)
        weight = 1.0 if idx is None else self.data.n_animals / len(idx)
        value = weight * elbo(hyper, data, post.mean, post.cov, post.cross, post.logdet, lin,
                              likelihood=post.likelihood).sum()
        total = value + self.theta.log_prior()
        if not torch.isfinite(total) or not torch.isfinite(post.elbo).all():
            raise FloatingPointError(self._message("the ELBO is not finite"))
        self.batch_change = None if idx is None else (float(start.elbo.sum()), float(post.elbo.sum()))
        self.post = post if idx is None else _scatter(self.post, idx, post)
        self.last_elbo = float(value.detach())
        return -total / self.scale

    def _message(self, what: str) -> str:
        return f"fit stopped at step {self.step}: {what}; likely cause: {self.diagnose()}"

    def diagnose(self) -> str:
        """Name the likely cause of a non-finite objective."""
        hyper = self.theta.hyper().detach()
        causes = []
        if not torch.isfinite(hyper.sigma).all() or hyper.sigma.max() > 1e2:
            causes.append(f"sigma exploded or is not finite (sigma = {hyper.sigma.tolist()})")
        elif hyper.sigma.min() < 1e-6:
            causes.append(f"sigma collapsed toward 0 (sigma = {hyper.sigma.tolist()})")
        bad = [k for k, v in hyper.params.items() if not torch.isfinite(v).all()]
        bad += ["network"] if not all(torch.isfinite(t).all() for t in self.theta.network_leaves) else []
        if bad:
            causes.append(f"rule parameters {bad} are not finite")
        mean = self.post.mean if self.post is not None else torch.zeros_like(self.data.features)
        drift = drift_sequence(self.rule, hyper.params, self.data, mean)
        if not torch.isfinite(drift).all():
            causes.append("the rule drift returned NaN/inf (the rule diverged)")
        elif drift.abs().max() > 1e3:
            causes.append(f"the rule drift diverged (max |drift| = {float(drift.abs().max()):.3g})")
        return "; ".join(causes) or "the learning rate is too large for the hyperparameters (try a smaller lr)"


def _optimizer(theta: Theta, config: FitConfig) -> torch.optim.Optimizer | None:
    leaves = theta.leaves()
    if not leaves:
        return None
    if theta.network_leaves:
        hyper_lr = config.lr if config.optimizer == "adam" else config.network_lr
        groups = [{"params": theta.network_leaves, "lr": config.network_lr}]
        groups += [{"params": theta.hyper_leaves(), "lr": hyper_lr}] if theta.hyper_leaves() else []
        return torch.optim.Adam(groups)
    if config.optimizer == "lbfgs":
        return torch.optim.LBFGS(leaves, lr=config.lr, max_iter=1, max_eval=25, history_size=20,
                                 line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)
    return torch.optim.Adam(leaves, lr=config.lr)


def _converged(trace: list[float], window: int, tol: float) -> bool:
    if len(trace) < 2 * window:
        return False
    last, prev = np.mean(trace[-window:]), np.mean(trace[-2 * window:-window])
    return abs(last - prev) <= tol * abs(last)


class _Closure:
    """L-BFGS/Adam closure that caches the last point (L-BFGS re-evaluates the accepted point).

    With L-BFGS each evaluation's inner solve starts from the posterior of the best point evaluated so far, not
    the last one: a line search tries points far out (measured: the ELBO at -4.4e9 with a learning rate near
    1), whose posteriors are poor starts for the next trial near the current point, so the next solves ran to
    the iteration cap, each step cost ~55 s and the fit stalled short of the optimum (REINFORCE+baseline on 16
    fast learners x 3,000 trials stopped 44 nats lower).
    """

    def __init__(self, objective: _Objective, opt: torch.optim.Optimizer) -> None:
        self.objective, self.opt = objective, opt
        self.values: list[float] = []
        self.cache: list = []
        self.from_best = isinstance(opt, torch.optim.LBFGS)
        self.best: tuple[float, Posterior] | None = None  # L-BFGS: the lowest loss evaluated and its posterior

    def same_point(self) -> bool:
        leaves = self.objective.theta.leaves()
        return bool(self.cache) and all(torch.equal(a, b.detach()) for a, b in zip(self.cache[0], leaves,
                                                                                     strict=True))

    def __call__(self) -> torch.Tensor:
        leaves = self.objective.theta.leaves()
        if self.same_point():
            for leaf, grad in zip(leaves, self.cache[2], strict=True):
                leaf.grad = grad.clone()
            self.values.append(self.cache[3])
            return self.cache[1]
        self.opt.zero_grad()
        if self.best is not None:
            self.objective.post = self.best[1]
        loss = self.objective()
        value = float(loss.detach())
        if self.from_best and (self.best is None or value <= self.best[0]):
            self.best = (value, self.objective.post)
        loss.backward()
        self.values.append(self.objective.last_elbo)
        self.cache[:] = [[leaf.detach().clone() for leaf in leaves], loss.detach(),
                         [leaf.grad.clone() for leaf in leaves], self.values[-1]]
        return loss


_MAX_RESTARTS = 3


class _StepGuard:
    """Adam: undo a step after which the ELBO fell by more than ``max_drop`` of its magnitude.

    Full batch, the exact ELBO at the new point is compared with the last kept point's, so a large fall is a
    step into a bad region (measured: a tanh MLP rule on rat W053 went from -9,615 to -18,622 in ten steps and
    never came back), not noise. Mini-batched, the batch's animals are compared with themselves when last
    updated (``change``; measured: a tanh MLP on 20 simulated animals fell by 255% in one step, then its
    sigma went from 0.01 to 1.8 and the rule was lost). The last kept point and its posterior are restored,
    the step sizes halved and Adam's moments reset. The restored point's own value is then kept whatever it
    is (its posterior is re-optimized, so it can differ from the kept value; judging it would undo the same
    point forever), and after ``max_undos`` undos the guard stands down.
    """

    def __init__(self, objective: _Objective, opt: torch.optim.Optimizer, max_drop: float,
                 max_undos: int = 10) -> None:
        self.objective, self.opt, self.max_drop, self.max_undos = objective, opt, max_drop, max_undos
        self.kept: tuple[list[torch.Tensor], Posterior | None, float] | None = None
        self.undos, self.restored = 0, False
        self.fall = (math.nan, math.nan)  # the last judged ELBO before and after, for the log

    def keep(self, leaves: list[torch.Tensor], value: float, change: tuple[float, float] | None = None) -> bool:
        """Keep the point the last step started from (``leaves``, ELBO ``value``), or restore the previous one.

        ``change`` (mini-batch): the batch's ELBO when its animals were last updated, and at ``leaves``.
        """
        judged = self.kept is not None and not self.restored and self.undos < self.max_undos
        self.restored = False
        before, after = change if change is not None else (self.kept[2] if self.kept else value, value)
        self.fall = (before, after)
        if judged and after < before - self.max_drop * abs(before):
            self.undos += 1
            self.restored = True
            self.objective.theta.restore(self.kept[0])
            self.objective.post = self.kept[1]
            for group in self.opt.param_groups:
                group["lr"] *= 0.5
            self.opt.state.clear()
            return False
        self.kept = (leaves, self.objective.post, value)
        return True


def _optimize(objective: _Objective, config: FitConfig, progress: bool) -> tuple[list[float], bool, int]:
    theta, opt = objective.theta, _optimizer(objective.theta, config)
    trace: list[float] = []
    converged, step, restarts = opt is None, 0, 0
    closure = None if opt is None else _Closure(objective, opt)
    decay = None if opt is None or isinstance(opt, torch.optim.LBFGS) or config.lr_decay == 1.0 else \
        torch.optim.lr_scheduler.ExponentialLR(opt, gamma=config.lr_decay)
    max_drop = config.max_elbo_drop if objective.full else config.max_batch_elbo_drop
    guard = _StepGuard(objective, opt, max_drop) if isinstance(opt, torch.optim.Adam) and max_drop is not None \
        else None
    bar = tqdm(total=config.max_steps, disable=not progress or opt is None, desc="fit", leave=False)
    start = time.perf_counter()
    while opt is not None and step < config.max_steps:
        if step and config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s:
            logger.info("time budget of %.0f s reached after %d steps", config.time_budget_s, step)
            break
        step += 1
        objective.step = step
        closure.values.clear()
        accepted = theta.snapshot()
        try:
            opt.step(closure)
        except FloatingPointError:
            # An L-BFGS line search can extrapolate far along a direction it sees as flat (e.g. log sigma of a
            # weight that barely moves): restart the method from the last accepted point, a few times at most.
            if not isinstance(opt, torch.optim.LBFGS) or not trace or restarts == _MAX_RESTARTS:
                raise
            restarts += 1
            theta.restore(accepted)
            opt.state.clear()
            logger.warning("step %d: the line search left the valid region; L-BFGS restarted from the last "
                           "accepted point (%d of %d restarts)", step, restarts, _MAX_RESTARTS)
            continue
        if decay is not None:
            decay.step()
        if not all(torch.isfinite(leaf).all() for leaf in theta.leaves()):
            raise FloatingPointError(objective._message("a hyperparameter became non-finite"))
        if guard is not None and not guard.keep(accepted, closure.values[0], objective.batch_change):
            logger.warning("step %d: the ELBO%s fell from %.2f to %.2f; step undone, Adam step sizes halved", step,
                           "" if objective.batch_change is None else " of the batch's animals", *guard.fall)
            continue
        trace.append(closure.values[0])  # the ELBO at the point accepted by the previous step
        bar.update(1)
        bar.set_postfix(elbo=f"{trace[-1]:.2f}")
        if step % config.log_every == 0:
            logger.info("step %d: ELBO %.4f, sigma %s", step, trace[-1], theta.hyper().sigma.tolist())
        grad_small = all(leaf.grad is None or float(leaf.grad.abs().max()) < 1e-9 for leaf in theta.leaves())
        stalled = len(trace) > 1 and abs(trace[-1] - trace[-2]) <= 0.01 * config.tol * abs(trace[-1])
        # mini-batch ELBOs are noisy estimates: only the step and time limits end a mini-batched fit
        if objective.full and (_converged(trace, config.window, config.tol) or grad_small or stalled):
            converged = True
            break
    bar.close()
    if closure is None or not closure.same_point() or not objective.full:
        objective.full = True  # refresh every animal's posterior at the final hyperparameters
        if closure is not None and closure.best is not None:
            objective.post = closure.best[1]
        with torch.no_grad():
            objective()
    trace.append(float(objective.post.elbo.sum()))
    return trace, converged, step


def _as_cohort(data: TrialData | CohortTensors, features: tuple[str, ...]) -> CohortTensors:
    # Fits run in double precision whatever the input's or the default dtype: the posterior precision carries
    # 1 / sigma^2, which float32 cannot factor once sigma is small (a random walk failed at sigma 4.5e-4).
    if isinstance(data, CohortTensors):
        return data.to(torch.float64)
    return CohortTensors.from_trials(data, features, dtype=torch.float64)


def fit(data: TrialData | CohortTensors, *, rule: LearningRule | None = None,
        features: tuple[str, ...] = ("bias", "stimulus"), config: FitConfig | None = None,
        seed: int | None = None, progress: bool | None = None) -> FitResult:
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
    config = config or FitConfig()
    if rule is not None and not rule.fittable:
        raise ValueError(f"rule {rule.name} is not fittable (its state depends on the latent weights)")
    if seed is not None:
        pyro.set_rng_seed(seed)
    progress = sys.stderr.isatty() if progress is None else progress
    start = time.perf_counter()
    cohort = _as_cohort(data, tuple(features))
    if isinstance(rule, NeuralRule):
        rule = rule.copy()  # trained in place below: never the caller's object
        rule.network.to(cohort.features.dtype)
    theta = Theta(rule, cohort, config)
    objective = _Objective(rule, theta, cohort, config, seed=seed)
    trace, converged, n_steps = _optimize(objective, config, progress)
    laplace = LaplacePosterior(np.zeros((0, 0)), (), np.zeros((0, 0)), {})
    if config.param_posterior == "laplace" and theta.laplace_leaves():
        laplace = laplace_covariance(objective, level=config.band_level)
    elapsed = time.perf_counter() - start
    logger.info("fit done: %d steps, ELBO %.4f, converged %s, %.2f s", n_steps, trace[-1], converged, elapsed)
    return _result(rule, cohort, theta, objective.post, trace, converged, n_steps, elapsed, laplace, config)


def _result(rule: LearningRule | None, cohort: CohortTensors, theta: Theta, post: Posterior, trace: list[float],
            converged: bool, n_steps: int, elapsed: float, laplace: LaplacePosterior, config: FitConfig
            ) -> FitResult:
    hyper = theta.hyper().detach()
    valid = cohort.valid.numpy()
    session = np.where(valid, np.cumsum(cohort.session_start.numpy(), axis=1) - 1, -1)
    mean = post.mean.numpy() * valid[..., None]
    wcov = post.cov.numpy() * valid[..., None, None]
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
