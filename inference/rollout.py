"""Deterministic rollout fit (sigma = 0): the method of Liu, Geadah & Pillow (2025).

The weights follow the rule exactly, ``w_{t+1} = w_t + drift(w_t, x_t, y_t, r_t, c_t)`` (no update on
trials without a choice), from learnable initial weights; the loss is the negative Bernoulli log-likelihood
per observed trial. Gradients flow through the whole weight trajectory, truncated every ``tbptt`` trials
(the weights and context are detached there). All animals of a mini-batch step together over the padded
time axis.

Works for any :class:`~learnrules.models.rule.LearningRule`: the network of a neural rule is trained
(:func:`~learnrules.models.neural.rule_network`), and the declared parameters of a parametric rule are
optimized on the unconstrained scale through ``biject_to(constraint)``.

Held-out animals (:func:`predict_heldout`) are predicted with the fitted shared rule from initial weights
that are either given (e.g. the mean of the training animals' initial weights) or fitted, with the rule
frozen, on the animal's first ``fit_trials`` trials, which are then left out of the score.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import biject_to
from tqdm.auto import tqdm

from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import rule_network
from learnrules.models.rule import LearningRule, Params

__all__ = [
    "RolloutConfig",
    "RolloutResult",
    "fit_rollout",
    "rollout_trajectory",
    "trial_loglik",
    "rollout_loglik",
    "estimate_initial_weights",
    "HeldoutPrediction",
    "predict_heldout",
]

logger = logging.getLogger(__name__)


def _chunk_contexts(rule: LearningRule, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor
                    ) -> Tensor:
    """Contexts after each trial of a chunk ``(A, L, ...)``, starting from the carried ``context``."""
    if rule.markov and rule.context_size == 0:
        return context.unsqueeze(-2).expand(*x.shape[:-1], 0)
    fast = getattr(rule, "contexts_from", None)
    if fast is not None:
        return fast(params, context, x, y, r)
    out = []
    for t in range(x.shape[-2]):
        context = rule.next_context(params, context, x[..., t, :], y[..., t], r[..., t])
        out.append(context)
    return torch.stack(out, dim=-2)


def rollout_trajectory(rule: LearningRule, params: Params, x: Tensor, y: Tensor, r: Tensor, mask: Tensor,
                       w0: Tensor, context0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Roll the weights forward over a chunk of trials.

    Parameters
    ----------
    rule, params
        The rule and its parameters.
    x : Tensor, shape (A, L, K)
        Features. ``y``, ``r``: choices and rewards, shape ``(A, L)``.
    mask : Tensor of bool, shape (A, L)
        Trials that update the weights (observed and not padding).
    w0 : Tensor, shape (A, K)
        Weights on the chunk's first trial.
    context0 : Tensor, shape (A, C), optional
        Context before the chunk (default: the rule's initial context).

    Returns
    -------
    weights : Tensor, shape (A, L, K)
        Weights used on each trial of the chunk.
    w_next : Tensor, shape (A, K)
        Weights after the chunk's last trial.
    context : Tensor, shape (A, C)
        Context after the chunk's last trial.
    """
    if context0 is None:
        context0 = rule.init_context(params, x.shape[:-2], x.shape[-1]).to(x.dtype)
    contexts = _chunk_contexts(rule, params, context0, x, y, r)
    gate = mask.to(x.dtype).unsqueeze(-1)
    w, out = w0, []
    for t in range(x.shape[-2]):
        out.append(w)
        w = w + gate[:, t] * rule.drift(params, w, x[:, t], y[:, t], r[:, t], contexts[:, t])
    context = contexts[:, -1] if x.shape[-2] > 0 else context0
    return torch.stack(out, dim=1), w, context


def trial_loglik(weights: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bernoulli log-likelihood of each choice under ``p(y=1) = sigmoid(w . x)``, shape ``(A, L)``."""
    logits = (weights * x).sum(-1)
    return -F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none")


def rollout_loglik(cohort: CohortTensors, rule: LearningRule, params: Params, init_weights: Tensor, *,
                   chunk: int = 500) -> Tensor:
    """Per-trial log-likelihood of a deterministic rollout, shape ``(animals, T)``; 0 on unobserved trials.

    ``init_weights`` is ``(animals, K)`` or ``(K,)`` (shared).
    """
    mask = cohort.observed & cohort.valid
    w = init_weights.to(cohort.features.dtype).expand(cohort.n_animals, cohort.n_features)
    context, out = None, []
    with torch.no_grad():
        for start in range(0, cohort.features.shape[1], chunk):
            sl = slice(start, start + chunk)
            x, y = cohort.features[:, sl], cohort.choice[:, sl]
            weights, w, context = rollout_trajectory(rule, params, x, y, cohort.reward[:, sl], mask[:, sl], w,
                                                     context)
            out.append(trial_loglik(weights, x, y))
    ll = torch.cat(out, dim=1) if out else cohort.choice.new_zeros(cohort.choice.shape)
    return torch.where(mask, ll, torch.zeros_like(ll))


def estimate_initial_weights(cohort: CohortTensors, *, n_trials: int = 100, l2: float = 1.0,
                             iterations: int = 25) -> Tensor:
    """Estimate initial weights by a ridge logistic regression on each animal's first ``n_trials`` trials.

    The psychometric-curve start of Liu et al.'s code, made a proper MAP estimate (prior precision ``l2``
    around 0); Newton's method vectorized over animals. Returns ``(animals, K)``.
    """
    mask = (cohort.observed & cohort.valid)[:, :n_trials].to(cohort.features.dtype)
    x, y = cohort.features[:, :n_trials], cohort.choice[:, :n_trials]
    k = cohort.n_features
    w = x.new_zeros(cohort.n_animals, k)
    eye = torch.eye(k, dtype=x.dtype)
    for _ in range(iterations):
        p = torch.sigmoid((x * w.unsqueeze(1)).sum(-1))
        grad = ((mask * (y - p)).unsqueeze(-1) * x).sum(1) - l2 * w
        hess = torch.einsum("at,atk,atj->akj", mask * p * (1 - p), x, x) + l2 * eye
        step = torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
        w = w + step
        if step.abs().max() < 1e-10:
            break
    return w


def constrained_params(rule: LearningRule, unconstrained: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map unconstrained tensors to the rule's parameter constraints."""
    return {name: biject_to(rule.parameters[name].constraint)(u) for name, u in unconstrained.items()}


def unconstrained_params(rule: LearningRule, params: Params | None, n_features: int) -> dict[str, Tensor]:
    """Unconstrained leaf tensors (requiring grad) for the rule's declared parameters."""
    start = dict(rule.default_params(n_features))
    start.update({k: torch.as_tensor(v, dtype=torch.get_default_dtype()) for k, v in (params or {}).items()})
    out = {}
    for name, spec in rule.parameters.items():
        value = start[name].detach().expand(spec.shape(n_features))
        out[name] = biject_to(spec.constraint).inv(value).clone().requires_grad_(True)
    return out


@dataclass(frozen=True)
class HeldoutPrediction:
    """Held-out-animal prediction under a fixed rule.

    Parameters
    ----------
    loglik : Tensor, shape (animals, T)
        Per-trial log-likelihood, 0 where not scored.
    scored : Tensor of bool, shape (animals, T)
        Trials in the score (observed, not padding, not used to fit the initial weights).
    init_weights : Tensor, shape (animals, K)
        Initial weights used.
    loglik_per_trial : float
        Mean log-likelihood over scored trials, nats.
    accuracy : float
        Fraction of scored trials whose choice is the more probable one.
    """

    loglik: Tensor
    scored: Tensor
    init_weights: Tensor
    loglik_per_trial: float
    accuracy: float


def _fit_init_only(cohort: CohortTensors, rule: LearningRule, params: Params, w0: Tensor, *, n_trials: int,
                   steps: int, lr: float) -> Tensor:
    """Fit initial weights on the first ``n_trials`` trials with the rule frozen (Adam)."""
    sub = CohortTensors(*(getattr(cohort, f)[:, :n_trials] for f in
                          ("features", "choice", "reward", "observed", "valid", "session_start")),
                        cohort.lengths.clamp(max=n_trials), cohort.feature_names, cohort.subjects)
    mask = sub.observed & sub.valid
    w0 = w0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w0], lr=lr)
    for _ in range(steps):
        weights, _, _ = rollout_trajectory(rule, params, sub.features, sub.choice, sub.reward, mask, w0)
        ll = trial_loglik(weights, sub.features, sub.choice)
        loss = -(ll * mask).sum() / mask.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w0.detach()


def predict_heldout(cohort: CohortTensors, rule: LearningRule, params: Params | None = None, *,
                    init_weights: Tensor | None = None, fit_trials: int = 0, steps: int = 100,
                    lr: float = 0.05) -> HeldoutPrediction:
    """Predict held-out animals with a fixed (fitted) rule.

    Parameters
    ----------
    cohort : CohortTensors
        The held-out animals.
    rule, params
        The fitted shared rule (``params`` empty for neural rules; the rule is not trained here).
    init_weights : Tensor, shape (K,) or (animals, K), optional
        Initial weights, e.g. the mean of the training animals' (``result.init_weights.mean(0)``).
        Default: a ridge logistic regression on the first ``max(fit_trials, 100)`` trials.
    fit_trials : int
        When > 0, refine the initial weights by maximizing the rollout likelihood of each animal's first
        ``fit_trials`` trials (rule frozen, ``steps`` Adam steps at ``lr``), and score only later trials.
    """
    params = dict(params or {})
    if init_weights is None:
        init_weights = estimate_initial_weights(cohort, n_trials=max(fit_trials, 100))
    w0 = init_weights.to(cohort.features.dtype).expand(cohort.n_animals, cohort.n_features).clone()
    scored = cohort.observed & cohort.valid
    if fit_trials > 0:
        w0 = _fit_init_only(cohort, rule, params, w0, n_trials=fit_trials, steps=steps, lr=lr)
        scored = scored & (torch.arange(cohort.features.shape[1]) >= fit_trials)
    ll = rollout_loglik(cohort, rule, params, w0)
    ll = torch.where(scored, ll, torch.zeros_like(ll))
    n = scored.sum().clamp(min=1)
    # A choice is predicted correctly when its probability exceeds 1/2, i.e. log-likelihood > log(1/2).
    correct = (ll > -torch.log(torch.tensor(2.0, dtype=ll.dtype))) & scored
    return HeldoutPrediction(ll, scored, w0, float(ll.sum() / n), float(correct.sum() / n))


@dataclass(frozen=True)
class RolloutConfig:
    """Options of :func:`fit_rollout`.

    Parameters
    ----------
    epochs : int
        Maximum number of passes over the animals.
    lr : float
        Adam learning rate of the rule (network weights or unconstrained parameters).
    init_lr : float
        Adam learning rate of the initial weights.
    lr_decay : float
        Multiplicative learning-rate decay per epoch (1 = none).
    tbptt : int
        Truncation length: the weights (and context) are detached every ``tbptt`` trials.
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
    tol : float
        Converged when the relative change of the epoch loss falls below ``tol``.
    patience : int or None
        Early stopping: stop after this many evaluations of the validation cohort without improvement
        (and restore the best state). Needs ``validation``.
    eval_every : int
        Epochs between validation evaluations.
    log_every : int
        Epochs between log lines (INFO).
    time_budget_s : float or None
        Stop after the epoch that exceeds this wall time.
    """

    epochs: int = 100
    lr: float = 3e-3
    init_lr: float = 3e-2
    lr_decay: float = 1.0
    tbptt: int = 100
    update: Literal["chunk", "sequence"] = "chunk"
    batch_size: int | None = None
    init_weights: Literal["per_animal", "shared", "fixed"] = "per_animal"
    init_from: Literal["data", "zeros"] = "data"
    n_init_trials: int = 100
    clip_norm: float | None = 10.0
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
        Mean negative log-likelihood per observed trial of each epoch (during training).
    val_loglik : tuple of float
        Held-out log-likelihood per trial at each validation evaluation (empty without validation).
    converged : bool
        Early-stopped, or the epoch loss changed by less than ``tol`` (relative).
    n_steps : int
        Epochs run. ``n_updates``: Adam steps taken.
    elapsed_s : float
        Wall time of the fit.
    train_loglik : Tensor, shape (animals, T)
        Per-trial log-likelihood of the training data under the final fit (0 on unobserved trials).
    stop_reason : str
        Why the loop ended.
    """

    rule: LearningRule
    params: dict[str, Tensor]
    init_weights: Tensor
    losses: tuple[float, ...]
    val_loglik: tuple[float, ...]
    converged: bool
    n_steps: int
    n_updates: int
    elapsed_s: float
    train_loglik: Tensor
    stop_reason: str


class _Trainer:
    """Mutable state of one fit: the rule copy, its tensors, the initial weights and the optimizer."""

    def __init__(self, cohort: CohortTensors, rule: LearningRule, params: Params | None,
                 init_weights: Tensor | None, config: RolloutConfig) -> None:
        self.cohort, self.config = cohort, config
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
        groups = [{"params": list(self.raw.values()), "lr": config.lr}]
        if self.network is not None:
            groups[0]["params"] += list(self.network.parameters())
        if self.w0.requires_grad:
            groups.append({"params": [self.w0], "lr": config.init_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=config.lr_decay)
        self.n_updates = 0

    def params(self) -> dict[str, Tensor]:
        return constrained_params(self.rule, self.raw)

    def initial(self, index: Tensor | None = None) -> Tensor:
        w0 = self.w0.expand(self.cohort.n_animals, self.cohort.n_features)
        return w0 if index is None else w0[index]

    def _step(self, epoch: int) -> None:
        trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, self.config.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.n_updates += 1

    def batch(self, index: Tensor, epoch: int) -> tuple[float, int]:
        """Train on the animals at ``index``; return the summed NLL and the number of observed trials."""
        c, cfg = self.cohort, self.config
        x, y, r = c.features[index], c.choice[index], c.reward[index]
        mask = (c.observed & c.valid)[index]
        n_total = int(mask.sum())
        w, context, nll_sum = self.initial(index), None, 0.0
        self.optimizer.zero_grad()
        for start in range(0, int(c.lengths[index].max()), cfg.tbptt):
            sl = slice(start, start + cfg.tbptt)
            n_chunk = int(mask[:, sl].sum())
            weights, w, context = rollout_trajectory(self.rule, self.params(), x[:, sl], y[:, sl], r[:, sl],
                                                     mask[:, sl], w, context)
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


def fit_rollout(cohort: CohortTensors, rule: LearningRule, *, config: RolloutConfig = RolloutConfig(),
                params: Params | None = None, init_weights: Tensor | None = None,
                validation: CohortTensors | None = None, seed: int | None = None,
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
    if config.patience is not None and validation is None:
        raise ValueError("config.patience needs a validation cohort")
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_()))
    trainer = _Trainer(cohort, rule, params, init_weights, config)
    t0, losses, val, best = time.perf_counter(), [], [], (-math.inf, None, 0)
    bar = tqdm(range(config.epochs), disable=not (sys.stderr.isatty() if progress is None else progress),
               desc=f"rollout {rule.name}")
    stop = "max epochs"
    for epoch in bar:
        order = torch.randperm(cohort.n_animals, generator=generator)
        sums = [trainer.batch(idx, epoch) for idx in order.split(config.batch_size or cohort.n_animals)]
        losses.append(sum(s for s, _ in sums) / max(sum(n for _, n in sums), 1))
        trainer.scheduler.step()
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if validation is not None and (epoch + 1) % config.eval_every == 0:
            val.append(predict_heldout(validation, trainer.rule, trainer.params(),
                                       init_weights=trainer.initial().detach().mean(0)).loglik_per_trial)
            if val[-1] > best[0]:
                best = (val[-1], trainer.snapshot(), 0)
            else:
                best = (best[0], best[1], best[2] + 1)
        if (epoch + 1) % config.log_every == 0 or epoch == 0:
            logger.info("epoch %d: train NLL/trial %.5f%s", epoch + 1, losses[-1],
                        f", held-out LL/trial {val[-1]:.5f}" if val else "")
        if config.patience is not None and best[2] >= config.patience:
            stop = f"early stop: no held-out improvement in {config.patience} evaluations"
            break
        if config.time_budget_s is not None and time.perf_counter() - t0 > config.time_budget_s:
            stop = f"time budget {config.time_budget_s:.0f} s"
            break
    bar.close()
    if best[1] is not None and config.patience is not None:
        trainer.restore(best[1])
    converged = stop.startswith("early") or (len(losses) > 1 and
                                             abs(losses[-1] - losses[-2]) <= config.tol * abs(losses[-2]))
    if trainer.network is not None:
        trainer.network.eval()
    fitted = {k: v.detach() for k, v in trainer.params().items()}
    w0 = trainer.initial().detach().clone()
    return RolloutResult(trainer.rule, fitted, w0, tuple(losses), tuple(val), converged, len(losses),
                         trainer.n_updates, time.perf_counter() - t0,
                         rollout_loglik(cohort, trainer.rule, fitted, w0), stop)
