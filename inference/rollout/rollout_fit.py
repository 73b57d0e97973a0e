"""Fit a rule by deterministic rollout (sigma = 0) with truncated backprop: Liu, Geadah & Pillow (2025).

The weights follow the rule exactly from learnable initial weights (:mod:`learnrules.inference.rollout.rollout`);
the loss is the negative Bernoulli log-likelihood per fitted trial (observed, not held out). Gradients flow
through the whole weight trajectory, truncated every ``tbptt`` trials (the weights and context are detached
there). All animals of a mini-batch step together over the padded time axis.

Works for any :class:`~learnrules.models.rule.LearningRule`: the network of a neural rule is trained
(:func:`~learnrules.models.neural.rule_network`), and the declared parameters of a parametric rule are
optimized on the unconstrained scale through ``biject_to(constraint)``.

Two optimizers: Adam on mini-batches of animals with truncated gradients (Liu et al.'s schedule) or exact
ones (``tbptt=None``), or full-batch L-BFGS on the exact gradient, which a line search needs, optionally after a
few Adam epochs (``warmup_epochs``). Exact gradients come from the whole rollout, by default solved in parallel
over trials (:mod:`learnrules.inference.rollout.parallel_rollout`). On Liu et al.'s 100 x 2,000 simulation (known
initial weights) L-BFGS brought MLP rules to 2-20 nats below the true rule's log-likelihood, or above it, in 900
s; Adam to 18 nats below in 2,400 s (bench/results/neural_identify*.md, neural_recovery_known_init.md).

The optimizer steps are :class:`~learnrules.inference.rollout.rollout_trainer.RolloutTrainer`'s; which trials to
hold out
and when to stop, :mod:`learnrules.inference.rollout.early_stopping`'s.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from learnrules.inference.rollout.early_stopping import early_stop_index
from learnrules.inference.rollout.rollout import predict_heldout, rollout_loglik
from learnrules.inference.rollout.rollout_trainer import RolloutTrainer
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, Params

__all__ = ["RolloutConfig", "RolloutResult", "fit_rollout"]

logger = logging.getLogger(__name__)


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
        trajectory (:mod:`~learnrules.inference.rollout.parallel_rollout`; the same values and gradients, truncated
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


def _validate(trainer: RolloutTrainer, validation: CohortTensors | None, holdout: Tensor | None) -> float:
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
        stopping and monitoring (e.g. :func:`~learnrules.inference.rollout.early_stopping.holdout_sessions`). Their
        choices still move the weights, as observed history does, so the score is one-step-ahead prediction of
        choices the fit never saw. (The cohort's own ``held_out`` trials, e.g. a cross-validation fold's test
        sessions, stay out of both the loss and this score.)
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
    trainer = RolloutTrainer(cohort, rule, params, init_weights, config, holdout)
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
