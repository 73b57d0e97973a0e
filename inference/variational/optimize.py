"""The outer loop of :func:`~learnrules.inference.variational.fit.fit`: the collapsed objective and the steps on it.

:class:`Objective` re-optimizes every animal's posterior q(w) for the current hyperparameters (warm-started
banded Gauss-Newton solves, :func:`~learnrules.inference.variational.vi.update_posterior`) and returns
``-(ELBO + log prior) / scale``, whose gradient in the hyperparameters is the collapsed bound's (envelope
theorem); mini-batched, a random subset of animals stands for the cohort. :func:`optimize` steps the
hyperparameters by L-BFGS or Adam on it, with a guard that undoes Adam steps after which the ELBO fell
(:class:`StepGuard`), restarts of L-BFGS after a line search left the valid region, and convergence judged
on window means of the ELBO trace.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from learnrules.inference.variational.theta import Theta
from learnrules.inference.variational.vi import Posterior, elbo, linearize, update_posterior
from learnrules.models.dynamics import drift_sequence
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import rule_network
from learnrules.models.rule import LearningRule

if TYPE_CHECKING:
    from learnrules.inference.variational.fit import FitConfig

__all__ = ["Objective", "StepGuard", "optimize"]

logger = logging.getLogger(__name__)


def _has_network(rule: LearningRule | None) -> bool:
    return rule is not None and rule_network(rule) is not None


def _subset(post: Posterior, idx: torch.Tensor) -> Posterior:
    return Posterior(post.mean[idx], post.cov[idx], post.cross[idx], post.logdet[idx], post.elbo[idx],
                     post.likelihood[idx], post.n_iter)


def _scatter(post: Posterior, idx: torch.Tensor, part: Posterior) -> Posterior:
    """Return ``post`` with the animals at ``idx`` replaced by ``part`` (the input is not modified)."""
    fields = [getattr(post, n).index_copy(0, idx, getattr(part, n))
              for n in ("mean", "cov", "cross", "logdet", "elbo", "likelihood")]
    return Posterior(*fields, part.n_iter)


class Objective:
    """Collapsed objective: re-optimizes q (warm start) and returns -(ELBO + log prior) / n_trials.

    With ``batch_size`` set (and ``full`` False) each call draws a random subset of animals, re-optimizes only
    their posteriors and scales their ELBO by ``N / B`` (an unbiased estimate of the total).
    """

    def __init__(self, rule: LearningRule | None, theta: Theta, data: CohortTensors, config: FitConfig,
                 seed: int | None = None) -> None:
        self.rule, self.theta, self.data, self.config = rule, theta, data, config
        self.post: Posterior | None = None
        self.init: torch.Tensor | None = None  # the first posterior solve's starting mean (a warm start's)
        self.n_trials = max(int(data.fitted.sum()), 1)
        # per trial for Adam and for networks (their L-BFGS tolerances then read per trial); the parametric
        # L-BFGS fits keep the total, whose scale their step sizes and tolerances were chosen for
        adam = config.optimizer == "adam"
        self.scale = float(self.n_trials) if adam or _has_network(rule) else 1.0
        self.step = 0
        self.last_elbo = float("nan")
        self.batch_change: tuple[float, float] | None = None  # mini-batch: its animals' ELBO before, after
        self.full = not (adam and config.batch_size and config.batch_size < data.n_animals)
        self.rng = np.random.default_rng(seed)

    def _batch(self) -> torch.Tensor | None:
        if self.full or self.post is None:
            return None
        n = self.data.n_animals
        return torch.as_tensor(np.sort(self.rng.choice(n, self.config.batch_size, replace=False)))

    def __call__(self) -> torch.Tensor:
        """Re-optimize the posteriors (of a batch) and return the scaled negative objective."""
        cfg = self.config
        hyper, data, start, idx = self.theta.hyper(), self.data, self.post, self._batch()
        if idx is not None:
            data, start = data.select(idx.tolist()), _subset(self.post, idx)
            hyper = hyper.select(idx)
        try:
            post = update_posterior(self.rule, hyper, data, start, max_iter=cfg.inner_max_iter,
                                    tol=cfg.inner_tol, n_points=cfg.gh_points, chunk=cfg.animal_chunk,
                                    init=self.init if start is None else None)
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
    if config.optimizer == "lbfgs":
        return torch.optim.LBFGS(leaves, lr=config.lr, max_iter=1, max_eval=25, history_size=config.history_size,
                                 line_search_fn="strong_wolfe", tolerance_grad=config.grad_tol,
                                 tolerance_change=1e-12)
    if theta.network_leaves:
        groups = [{"params": theta.network_leaves, "lr": config.network_lr}]
        groups += [{"params": theta.hyper_leaves(), "lr": config.lr}] if theta.hyper_leaves() else []
        return torch.optim.Adam(groups)
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

    def __init__(self, objective: Objective, opt: torch.optim.Optimizer) -> None:
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


class StepGuard:
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

    def __init__(self, objective: Objective, opt: torch.optim.Optimizer, max_drop: float,
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


def optimize(objective: Objective, config: FitConfig, progress: bool) -> tuple[list[float], bool, int]:
    """Step the hyperparameters until convergence or a limit; return the ELBO trace, converged and steps.

    Every animal's posterior is refreshed at the final hyperparameters (``objective.post``) before returning.
    """
    theta, opt = objective.theta, _optimizer(objective.theta, config)
    trace: list[float] = []
    converged, step, restarts = opt is None, 0, 0
    closure = None if opt is None else _Closure(objective, opt)
    decay = None if opt is None or isinstance(opt, torch.optim.LBFGS) or config.lr_decay == 1.0 else \
        torch.optim.lr_scheduler.ExponentialLR(opt, gamma=config.lr_decay)
    max_drop = config.max_elbo_drop if objective.full else config.max_batch_elbo_drop
    guard = StepGuard(objective, opt, max_drop) if isinstance(opt, torch.optim.Adam) and max_drop is not None \
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
        grad_small = all(leaf.grad is None or float(leaf.grad.abs().max()) < config.grad_tol
                         for leaf in theta.leaves())
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
