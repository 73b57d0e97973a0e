"""Fit a rule by deterministic rollout (sigma = 0) with truncated backprop: Liu, Geadah & Pillow (2025).

The weights follow the rule exactly from learnable initial weights (:mod:`learnrules.inference.rollout`);
the loss is the negative Bernoulli log-likelihood per fitted trial (observed, not held out). Gradients flow
through the whole weight trajectory, truncated every ``tbptt`` trials (the weights and context are detached
there). All animals of a mini-batch step together over the padded time axis.

Works for any :class:`~learnrules.models.rule.LearningRule`: the network of a neural rule is trained
(:func:`~learnrules.models.neural.rule_network`), and the declared parameters of a parametric rule are
optimized on the unconstrained scale through ``biject_to(constraint)``.

Two optimizers: Adam on mini-batches of animals with truncated gradients (Liu et al.'s schedule) or exact
ones (``tbptt=None``), or full-batch L-BFGS on the exact gradient, which a line search needs, optionally after a
few Adam epochs (``warmup_epochs``). Exact gradients come from the whole rollout, by default solved in parallel
over trials (:mod:`learnrules.inference.parallel_rollout`). On Liu et al.'s 100 x 2,000 simulation (known
initial weights) L-BFGS brought MLP rules to 2-20 nats below the true rule's log-likelihood, or above it, in 900
s; Adam to 18 nats below in 2,400 s (bench/results/neural_identify*.md, neural_recovery_known_init.md).
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from learnrules.inference.parallel_rollout import parallel_trajectory
from learnrules.inference.rollout import (
    constrained_params,
    estimate_initial_weights,
    predict_heldout,
    rollout_loglik,
    rollout_trajectory,
    trial_loglik,
    unconstrained_params,
)
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import rule_network
from learnrules.models.rule import LearningRule, Params

__all__ = ["RolloutConfig", "RolloutResult", "early_stop_index", "fit_rollout", "holdout_sessions"]

logger = logging.getLogger(__name__)

_DIVERGED_LOSS = 1e10
"""Loss per trial an L-BFGS line search is told for a diverging rollout: far above any finite rollout's."""


@dataclass(frozen=True)
class RolloutConfig:
    """Options of :func:`fit_rollout`.

    Parameters
    ----------
    epochs : int
        Maximum number of passes over the animals (L-BFGS: of its steps).
    optimizer : {"adam", "lbfgs"}
        "adam": the options below. "lbfgs": full-batch L-BFGS with a strong-Wolfe line search on the
        untruncated rollout likelihood, one step of up to ``lbfgs_iter`` iterations per epoch; ``lr``,
        ``init_lr``, ``lr_decay``, ``tbptt``, ``update``, ``batch_size`` and ``clip_norm`` apply to its Adam
        warm-up only. A line-search trial whose rollout diverges counts as a very high loss, so the search
        backs off from it.
    lbfgs_iter : int
        Iterations (function evaluations are more, for the line search) per L-BFGS step.
    warmup_epochs : int
        With ``optimizer="lbfgs"``: Adam epochs (with the Adam options below) before L-BFGS takes over. From a
        network's random initialization L-BFGS can settle in a narrow valley of the whole-sequence likelihood
        (bench/neural_speed.py: 2 of 4 initializations); a few small Adam steps first lead it to a better one.
    solver : {"parallel", "sequential"}
        How a whole-sequence rollout (L-BFGS; Adam with ``tbptt=None`` or ``update="sequence"``) is
        evaluated: "parallel" solves all trials at once by Newton iterations started from the previous solve's
        trajectory (:mod:`~learnrules.inference.parallel_rollout`; the same values and gradients, truncated
        ones too, 5-7x faster on 12 x 10,000 trials); "sequential" steps through the trials.
    lr : float
        Adam learning rate of the rule (network weights or unconstrained parameters).
    init_lr : float
        Adam learning rate of the initial weights.
    lr_decay : float
        Multiplicative learning-rate decay per epoch (1 = none).
    tbptt : int or None
        Truncation length: the weights (and context) are detached every ``tbptt`` trials. None: no
        truncation, one Adam step per mini-batch on the exact gradient (solved by ``solver``).
    update : {"chunk", "sequence"}
        "chunk": one Adam step per truncation chunk (classic truncated BPTT, many more steps per epoch);
        "sequence": gradients of all chunks accumulated into one step per mini-batch (Liu et al.'s code).
    batch_size : int or None
        Animals per mini-batch (all step together); None = all animals.
    init_weights : {"per_animal", "shared", "fixed"}
        Learn one initial weight vector per animal, one shared by all, or keep the starting values.
    init_from : {"data", "zeros"}
        Start the initial weights at a ridge logistic regression on each animal's first ``n_init_trials``
        trials, or at zero.
    n_init_trials : int
        Trials used by ``init_from="data"``.
    clip_norm : float or None
        Gradient-norm clipping of each step (None = off).
    weight_decay : float
        L2 penalty ``weight_decay / 2 * ||theta||^2`` on a neural rule's network parameters, added to the
        loss per observed trial (a Gaussian prior on the network, MAP fit); it prefers smooth, small-weight
        updates among those the data cannot tell apart. 0 = none; no effect on parametric rules.
    tol : float
        Converged when the relative change of the epoch loss falls below ``tol``.
    patience : int or None
        Early stopping: stop after this many evaluations of the validation cohort without improvement
        (and restore the best state); evaluations in an L-BFGS fit's warm-up do not count. Needs
        ``validation``.
    eval_every : int
        Epochs between validation evaluations.
    log_every : int
        Epochs between log lines (INFO).
    time_budget_s : float or None
        Stop after the epoch that exceeds this wall time.
    """

    epochs: int = 100
    optimizer: Literal["adam", "lbfgs"] = "adam"
    lbfgs_iter: int = 20
    warmup_epochs: int = 0
    solver: Literal["parallel", "sequential"] = "parallel"
    lr: float = 3e-3
    init_lr: float = 3e-2
    lr_decay: float = 1.0
    tbptt: int | None = 100
    update: Literal["chunk", "sequence"] = "chunk"
    batch_size: int | None = None
    init_weights: Literal["per_animal", "shared", "fixed"] = "per_animal"
    init_from: Literal["data", "zeros"] = "data"
    n_init_trials: int = 100
    clip_norm: float | None = 10.0
    weight_decay: float = 0.0
    tol: float = 1e-5
    patience: int | None = None
    eval_every: int = 1
    log_every: int = 10
    time_budget_s: float | None = None


@dataclass(frozen=True)
class RolloutResult:
    """Result of :func:`fit_rollout`.

    Parameters
    ----------
    rule : LearningRule
        A trained copy of the rule (the caller's rule is untouched).
    params : dict of str to Tensor
        Fitted constrained parameters of a parametric rule (empty for neural rules).
    init_weights : Tensor, shape (animals, K)
        Fitted initial weights.
    losses : tuple of float
        Mean negative log-likelihood per fitted trial (observed, not held out) of each epoch (during training).
    val_loglik : tuple of float
        Held-out log-likelihood per trial at each validation evaluation (empty without validation).
    val_train_s : tuple of float
        Wall time spent training (validations excluded) when each of them was made: the time a fit without
        monitoring takes to reach that held-out score.
    converged : bool
        Early-stopped, or the epoch loss changed by less than ``tol`` (relative).
    n_steps : int
        Epochs run (less any undone L-BFGS step). ``n_updates``: optimizer steps taken.
    elapsed_s : float
        Wall time of the fit.
    train_loglik : Tensor, shape (animals, T)
        Per-trial log-likelihood of the training animals under the final fit, held-out trials included (0 on
        unobserved trials).
    stop_reason : str
        Why the loop ended.
    monitor_loglik : tuple of float
        Log-likelihood per trial of the ``monitor`` animals at each evaluation (empty without them); it
        never selects or stops the fit.
    """

    rule: LearningRule
    params: dict[str, Tensor]
    init_weights: Tensor
    losses: tuple[float, ...]
    val_loglik: tuple[float, ...]
    val_train_s: tuple[float, ...]
    converged: bool
    n_steps: int
    n_updates: int
    elapsed_s: float
    train_loglik: Tensor
    stop_reason: str
    monitor_loglik: tuple[float, ...] = ()


class _Trainer:
    """Mutable state of one fit: the rule copy, its tensors, the initial weights and the optimizer."""

    def __init__(self, cohort: CohortTensors, rule: LearningRule, params: Params | None,
                 init_weights: Tensor | None, config: RolloutConfig, holdout: Tensor | None = None) -> None:
        self.cohort, self.config = cohort, config
        self.updates = cohort.observed & cohort.valid  # trials whose choice moves the weights
        self.fitted = cohort.fitted if holdout is None else cohort.fitted & ~holdout  # trials in the loss
        self.rule = copy.deepcopy(rule)
        self.network = rule_network(self.rule)
        if self.network is not None:
            self.network.to(cohort.features.dtype).train()
        self.raw = unconstrained_params(self.rule, params, cohort.n_features)
        if init_weights is None:
            init_weights = (estimate_initial_weights(cohort, n_trials=config.n_init_trials)
                            if config.init_from == "data" else cohort.features.new_zeros(cohort.n_features))
        w0 = init_weights.detach().to(cohort.features.dtype)
        if config.init_weights == "shared":
            w0 = w0.reshape(-1, cohort.n_features).mean(0)
        else:
            w0 = w0.expand(cohort.n_animals, cohort.n_features)
        self.w0 = w0.clone().requires_grad_(config.init_weights != "fixed")
        rule_tensors = list(self.raw.values()) + (list(self.network.parameters()) if self.network is not None else [])
        init_tensors = [self.w0] if self.w0.requires_grad else []
        groups = [{"params": rule_tensors, "lr": config.lr}]
        groups += [{"params": init_tensors, "lr": config.init_lr}] if init_tensors else []
        self.adam = torch.optim.Adam(groups)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.adam, gamma=config.lr_decay)
        # one parameter group only: L-BFGS has no per-group options
        self.lbfgs = (torch.optim.LBFGS(rule_tensors + init_tensors, lr=1.0, max_iter=config.lbfgs_iter,
                                        history_size=100, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                                        tolerance_change=1e-14) if config.optimizer == "lbfgs" else None)
        self.n_updates = 0
        self.guess: Tensor | None = None  # last rollouts solved in parallel, to start the next ones
        self.diverged_trials = 0  # L-BFGS line-search trials whose rollout diverged

    def params(self) -> dict[str, Tensor]:
        return constrained_params(self.rule, self.raw)

    def initial(self, index: Tensor | None = None) -> Tensor:
        w0 = self.w0.expand(self.cohort.n_animals, self.cohort.n_features)
        return w0 if index is None else w0[index]

    def penalty(self) -> Tensor:
        """Return the weight-decay term of the per-trial loss (0 without a network or weight decay)."""
        if self.network is None or self.config.weight_decay == 0:
            return torch.zeros((), dtype=self.cohort.features.dtype)
        squares = sum(p.square().sum() for p in self.network.parameters())
        return 0.5 * self.config.weight_decay * squares

    def _step(self, epoch: int) -> None:
        penalty = self.penalty()
        if penalty.requires_grad:  # once per step: the penalty is per trial, like the scaled NLL
            penalty.backward()
        trainable = [p for g in self.adam.param_groups for p in g["params"]]
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, self.config.clip_norm)
        self.adam.step()
        self.adam.zero_grad()
        self.n_updates += 1

    def batch(self, index: Tensor, epoch: int) -> tuple[float, int]:
        """Train on the animals at ``index``; return the summed NLL and the number of fitted trials."""
        c, cfg = self.cohort, self.config
        x, y, r = c.features[index], c.choice[index], c.reward[index]
        updates, mask = self.updates[index], self.fitted[index]
        n_total = int(mask.sum())
        self.adam.zero_grad()
        if cfg.tbptt is None or (cfg.update == "sequence" and cfg.solver == "parallel"):  # one solve, one step
            nll = -(trial_loglik(self.trajectory(index, cfg.tbptt), x, y) * mask).sum()
            if not torch.isfinite(nll):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}: the rolled-out weights diverged (rule "
                                         "update too large); lower lr or init_scale, or set clip_norm")
            if n_total > 0:
                (nll / n_total).backward()
                self._step(epoch)
            return float(nll.detach()), n_total
        w, context, nll_sum = self.initial(index), None, 0.0
        for start in range(0, int(c.lengths[index].max()), cfg.tbptt):
            sl = slice(start, start + cfg.tbptt)
            n_chunk = int(mask[:, sl].sum())
            weights, w, context = rollout_trajectory(self.rule, self.params(), x[:, sl], y[:, sl], r[:, sl],
                                                     updates[:, sl], w, context)
            nll = -(trial_loglik(weights, x[:, sl], y[:, sl]) * mask[:, sl]).sum()
            if not torch.isfinite(nll):
                raise FloatingPointError(
                    f"non-finite loss at epoch {epoch}, trials {start}-{start + cfg.tbptt}: the rolled-out "
                    "weights diverged (rule update too large); lower lr, init_scale or tbptt, or set clip_norm")
            nll_sum += float(nll.detach())
            scale = n_chunk if cfg.update == "chunk" else n_total
            if scale > 0:
                (nll / scale).backward()
            if cfg.update == "chunk" and scale > 0:
                self._step(epoch)
            w, context = w.detach(), context.detach()
        if cfg.update == "sequence":
            self._step(epoch)
        return nll_sum, n_total

    def lbfgs_step(self, epoch: int) -> tuple[float, int]:
        """One full-batch L-BFGS step; the summed NLL before it and the number of fitted trials.

        A line-search trial whose rollout diverges (a non-finite loss) is reported to the line search as a
        loss of ``_DIVERGED_LOSS`` with a zero gradient, so that it backtracks towards the finite side; the
        point L-BFGS keeps is always one it evaluated as finite and better.
        """
        c, mask = self.cohort, self.fitted
        n_total, calls = int(mask.sum()), []

        def closure() -> Tensor:
            self.lbfgs.zero_grad()
            weights = self.trajectory()
            nll = -(trial_loglik(weights, c.features, c.choice) * mask).sum()
            calls.append(float(nll.detach()))
            if math.isfinite(calls[-1]):
                loss = nll / max(n_total, 1) + self.penalty()
                loss.backward()
                return loss
            if len(calls) == 1:  # the starting state itself
                raise FloatingPointError(f"non-finite loss at epoch {epoch}: the rolled-out weights diverged")
            self.diverged_trials += 1
            return torch.tensor(_DIVERGED_LOSS, dtype=nll.dtype)

        self.lbfgs.step(closure)
        self.n_updates += 1
        return calls[0], n_total

    def trajectory(self, index: Tensor | None = None, truncate: int | None = None) -> Tensor:
        """Weights of the whole rollout of the animals at ``index`` (default all), with gradients.

        The gradient is exact, or that of truncated backprop every ``truncate`` trials.
        """
        c = self.cohort
        x, y, r, mask = c.features, c.choice, c.reward, self.updates
        if index is not None:
            x, y, r, mask = x[index], y[index], r[index], mask[index]
        if self.config.solver == "sequential":
            return rollout_trajectory(self.rule, self.params(), x, y, r, mask, self.initial(index))[0]
        if self.guess is None:  # the initial weights held constant, as parallel_trajectory would start
            self.guess = self.initial().detach().unsqueeze(-2).expand(c.features.shape).clone()
        solved = parallel_trajectory(self.rule, self.params(), x, y, r, mask, self.initial(index),
                                     guess=self.guess if index is None else self.guess[index], truncate=truncate)
        if torch.isfinite(solved.weights).all():  # the next solve of these animals starts from here
            if index is None:
                self.guess = solved.weights.detach()
            else:
                self.guess[index] = solved.weights.detach()
        return solved.weights

    def snapshot(self) -> dict[str, Any]:
        state = {k: v.detach().clone() for k, v in self.raw.items()}
        net = {k: v.clone() for k, v in self.network.state_dict().items()} if self.network is not None else {}
        return {"raw": state, "net": net, "w0": self.w0.detach().clone()}

    def restore(self, snap: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, v in snap["raw"].items():
                self.raw[k].copy_(v)
            self.w0.copy_(snap["w0"])
        if self.network is not None:
            self.network.load_state_dict(snap["net"])


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


def _validate(trainer: _Trainer, validation: CohortTensors | None, holdout: Tensor | None) -> float:
    """Held-out log-likelihood per trial of the trainer's current state."""
    if validation is not None:
        return predict_heldout(validation, trainer.rule, trainer.params(),  # no warning per evaluation
                               init_weights=trainer.initial().detach().mean(0), warn_diverged=False,
                               solver=trainer.config.solver).loglik_per_trial
    with torch.no_grad():
        ll = rollout_loglik(trainer.cohort, trainer.rule, trainer.params(), trainer.initial(),
                            solver=trainer.config.solver)
    scored = holdout & trainer.cohort.fitted
    return float(ll[scored].sum() / scored.sum().clamp(min=1))


def early_stop_index(val_loglik, *, patience: int, eval_every: int = 1, warmup_epochs: int = 0) -> int | None:
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


def fit_rollout(cohort: CohortTensors, rule: LearningRule, *, config: RolloutConfig = RolloutConfig(),
                params: Params | None = None, init_weights: Tensor | None = None,
                validation: CohortTensors | None = None, holdout: Tensor | None = None,
                monitor: CohortTensors | None = None, seed: int | None = None,
                progress: bool | None = None) -> RolloutResult:
    """Fit a rule (and the initial weights) by deterministic rollout with truncated backprop through time.

    Parameters
    ----------
    cohort : CohortTensors
        Training animals.
    rule : LearningRule
        Any fittable rule; it is copied, the copy is trained and returned in the result.
    config : RolloutConfig
        Optimization options.
    params : Mapping[str, Tensor], optional
        Starting values of a parametric rule's parameters (default: the declared defaults).
    init_weights : Tensor, shape (K,) or (animals, K), optional
        Starting initial weights (default: ``config.init_from``).
    validation : CohortTensors, optional
        Held-out animals, scored with the mean fitted initial weights, for early stopping and monitoring.
    holdout : Tensor of bool, shape (animals, T), optional
        Instead of ``validation``: trials of the training animals left out of the loss and scored for early
        stopping and monitoring (e.g. :func:`holdout_sessions`). Their choices still move the weights, as
        observed history does, so the score is one-step-ahead prediction of choices the fit never saw. (The
        cohort's own ``held_out`` trials, e.g. a cross-validation fold's test sessions, stay out of both the
        loss and this score.)
    monitor : CohortTensors, optional
        Animals scored at each evaluation for the record only (``RolloutResult.monitor_loglik``), e.g. the
        test animals of a benchmark whose fits select their state on ``validation``. Needs ``validation`` or
        ``holdout``; its time is excluded from ``val_train_s`` as theirs is.
    seed : int, optional
        Seed of the mini-batch order.
    progress : bool, optional
        Show a tqdm bar (default: when stderr is a terminal).

    Returns
    -------
    RolloutResult

    Notes
    -----
    With free per-animal initial weights a flexible (neural) rule can trade them against, e.g., a
    mean-reverting update and reach the likelihood of the true rule with a different per-trial update; the
    held-out likelihood is then well recovered but the update itself less so (bench/neural_recovery.py). Known
    or fixed initial weights (``RolloutConfig(init_weights="fixed")`` and the ``init_weights`` argument) remove
    that freedom.
    """
    if not rule.fittable:
        raise ValueError(f"rule {rule.name} is not fittable (its state depends on the latent weights)")
    if validation is not None and holdout is not None:
        raise ValueError("give a validation cohort or held-out trials, not both")
    if holdout is not None and holdout.shape != cohort.observed.shape:
        raise ValueError(f"holdout must have the cohort's shape {tuple(cohort.observed.shape)}, "
                         f"got {tuple(holdout.shape)}")
    if config.patience is not None and validation is None and holdout is None:
        raise ValueError("config.patience needs a validation cohort or held-out trials")
    if monitor is not None and validation is None and holdout is None:
        raise ValueError("monitor animals are scored at validation evaluations: give a validation cohort or "
                         "held-out trials")
    if config.optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"config.optimizer must be 'adam' or 'lbfgs', got {config.optimizer!r}")
    if config.solver not in ("parallel", "sequential"):
        raise ValueError(f"config.solver must be 'parallel' or 'sequential', got {config.solver!r}")
    if config.warmup_epochs < 0 or (config.warmup_epochs and config.optimizer != "lbfgs"):
        raise ValueError(f"config.warmup_epochs (Adam epochs before L-BFGS) must be >= 0 and needs optimizer='lbfgs', "
                         f"got {config.warmup_epochs} with {config.optimizer!r}")
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_()))
    trainer = _Trainer(cohort, rule, params, init_weights, config, holdout)
    t0, losses, val, best_state = time.perf_counter(), [], [], None
    val_train_s, validating_s, monitored = [], 0.0, []
    bar = tqdm(range(config.epochs), disable=not (sys.stderr.isatty() if progress is None else progress),
               desc=f"rollout {rule.name}")
    stop = "max epochs"
    for epoch in bar:
        if config.optimizer == "lbfgs" and epoch >= config.warmup_epochs:
            sums = [trainer.lbfgs_step(epoch)]
        else:
            order = torch.randperm(cohort.n_animals, generator=generator)
            sums = [trainer.batch(idx, epoch) for idx in order.split(config.batch_size or cohort.n_animals)]
            trainer.scheduler.step()
        losses.append(sum(s for s, _ in sums) / max(sum(n for _, n in sums), 1))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if (validation is not None or holdout is not None) and (epoch + 1) % config.eval_every == 0:
            tick = time.perf_counter()
            val_train_s.append(tick - t0 - validating_s)
            val.append(_validate(trainer, validation, holdout))
            if monitor is not None:
                monitored.append(_validate(trainer, monitor, None))
            validating_s += time.perf_counter() - tick
            if val[-1] > max(val[:-1], default=-math.inf):
                best_state = trainer.snapshot()
            if config.patience is not None and early_stop_index(
                    val, patience=config.patience, eval_every=config.eval_every,
                    warmup_epochs=config.warmup_epochs) is not None:
                stop = f"early stop: no held-out improvement in {config.patience} evaluations"
        if (epoch + 1) % config.log_every == 0 or epoch == 0:
            logger.info("epoch %d: train NLL/trial %.5f%s", epoch + 1, losses[-1],
                        f", held-out LL/trial {val[-1]:.5f}" if val else "")
        if stop.startswith("early"):
            break
        if config.time_budget_s is not None and time.perf_counter() - t0 > config.time_budget_s:
            stop = f"time budget {config.time_budget_s:.0f} s"
            break
    bar.close()
    if trainer.diverged_trials:
        logger.info("%d L-BFGS line-search trials met a diverging rollout and were backed off from",
                    trainer.diverged_trials)
    if best_state is not None and config.patience is not None:
        trainer.restore(best_state)
    converged = stop.startswith("early") or (len(losses) > 1 and
                                             abs(losses[-1] - losses[-2]) <= config.tol * abs(losses[-2]))
    if trainer.network is not None:
        trainer.network.eval()
    fitted = {k: v.detach() for k, v in trainer.params().items()}
    w0 = trainer.initial().detach().clone()
    return RolloutResult(trainer.rule, fitted, w0, tuple(losses), tuple(val), tuple(val_train_s), converged,
                         len(losses), trainer.n_updates, time.perf_counter() - t0,
                         rollout_loglik(cohort, trainer.rule, fitted, w0, solver=config.solver), stop,
                         tuple(monitored))
