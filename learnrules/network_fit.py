"""The variational fit of neural and hybrid rules: the parametric stage, then the network warm-started there.

A hybrid's network starts at exactly zero on top of its fitted parametric rule; a plain ``mlp`` / ``gru`` starts
as an MLP distilled from a fitted :data:`~learnrules.rule_names.TEACHER`. The network, the rule's parameters
and the noise are then optimized by full-batch L-BFGS to a tolerance (:data:`NEURAL_FIT_CONFIG`), from one or
several initializations (the best chosen on held-out sessions). A GRU rule is fitted as its MLP first and then
grown into a GRU that starts as exactly that fitted MLP (:meth:`GRURule.from_mlp`): the GRU stage only has to
learn what the history adds, so it starts, and stays, at or above the MLP's ELBO.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from learnrules.fitted_model import DTYPE, FittedModel
from learnrules.inference.evaluation.evaluate import gaussian_filter_loglik
from learnrules.inference.result import FitResult
from learnrules.inference.rollout.early_stopping import holdout_sessions
from learnrules.inference.variational.distill import distill
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.hybrid import HybridRule
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import Activation, GRURule, MLPRule, NeuralRule
from learnrules.models.rule import LearningRule, as_params
from learnrules.parallel import ParallelConfig, Task, TaskFailure, progress_bar, run_tasks
from learnrules.rule_names import build_rule, split_rule_name, stage_one

__all__ = ["MAX_UPDATE", "NEURAL_ACTIVATION", "NEURAL_FIT_CONFIG", "NEURAL_HIDDEN", "fit_network", "fit_staged",
           "grow_gru", "mlp_stage", "network_part", "run_restarts"]

logger = logging.getLogger(__name__)


# The network part of a variational neural or hybrid fit: largest change of a weight in one trial it can add.
MAX_UPDATE = 0.1
# Variational settings of the network stage (bench/neural_converge.py): full-batch L-BFGS on the collapsed ELBO
# per trial, posteriors re-solved warm-started at each evaluation (at most 10 Gauss-Newton iterations: the line
# search's far trial points otherwise cost up to 50, ~12 s each on 6 x 3,000 trials, and any q gives a valid
# bound); converged when the ELBO's 5-step window means change by less than 2e-6 of its size, no gradient entry
# exceeds 1e-6 nats/trial, or a line search finds no better point. The time budget is a cap. The output
# layer's Normal prior (sd 0.01) keeps the network from fitting noise: on 4 animals x 3,000 trials a hybrid
# without it gained 15 nats of ELBO and lost 0.0033 nats/trial on held-out animals; with it, +0.00007.
NEURAL_FIT_CONFIG = FitConfig(optimizer="lbfgs", param_posterior="none", max_steps=1000, window=5, tol=2e-6,
                              grad_tol=1e-6, log_every=10, network_prior_sd=0.01, inner_max_iter=10)
NEURAL_HIDDEN = (16, 16)
NEURAL_ACTIVATION: Activation = "tanh"  # smooth: L-BFGS's curvature pairs and line search assume it


def run_restarts(tasks: Sequence[Task], parallel: ParallelConfig, progress: bool | None) -> list:
    """Run the fits of several initializations where ``parallel`` says (one bar over them when not here)."""
    if parallel.in_process:
        outs = run_tasks(tasks, parallel)
    else:
        with progress_bar(len(tasks), progress=progress, desc="initializations") as bar:
            outs = run_tasks(tasks, parallel, bar=bar)
    failed = [o for o in outs if isinstance(o, TaskFailure)]
    if failed:  # each is logged; the first is raised, of its own type
        if failed[0].exception is not None and parallel.in_process:
            raise failed[0].exception
        raise failed[0].labelled()
    return outs


def network_part(kind: str, n_features: int, *, seed: int | None, hidden: Sequence[int] = NEURAL_HIDDEN,
                 activation: Activation = NEURAL_ACTIVATION) -> NeuralRule:
    """Return the network of a variational neural or hybrid fit: bounded by :data:`MAX_UPDATE`, starting at zero.

    A GRU backpropagates through whole sequences (``bptt_window=None``): L-BFGS needs the exact gradient.
    """
    if kind == "mlp":
        return MLPRule(n_features, hidden=tuple(hidden), activation=activation, max_update=MAX_UPDATE, seed=seed)
    return GRURule(n_features, hidden=tuple(hidden), activation=activation, max_update=MAX_UPDATE, seed=seed,
                   bptt_window=None)


def grow_gru(rule: NeuralRule, *, seed: int | None) -> NeuralRule:
    """Return the GRU (or GRU hybrid) that starts as exactly the fitted MLP (or MLP hybrid) ``rule``."""
    if isinstance(rule, HybridRule):
        return HybridRule(rule.base, grow_gru(rule.part, seed=seed), base_name=rule.config.base)
    return GRURule.from_mlp(rule, seed=seed, bptt_window=None)


def mlp_stage(name: str) -> str:
    """Return the rule a GRU rule's fit passes through: ``BASE+gru`` -> ``BASE+mlp``, ``gru`` -> ``mlp``."""
    base, kind = split_rule_name(name)
    if kind != "gru":
        raise ValueError(f"{name!r} is not a GRU rule")
    return "mlp" if base == "zero" else f"{base}+mlp"


def fit_network(data: CohortTensors, rule: NeuralRule, config: FitConfig, *, seed: int | None,
                progress: bool | None, start: FitResult, grow: bool) -> FitResult:
    """Fit ``rule`` from ``start``; with ``grow``, then fit the GRU grown from it (:func:`grow_gru`).

    Each stage has the time cap of ``config``; the result's steps and seconds count both stages.
    """
    fitted = fit(data, rule=rule, config=config, seed=seed, progress=progress, start=start)
    if not grow:
        return fitted
    grown = fit(data, rule=grow_gru(fitted.neural_rule(), seed=seed), config=config, seed=seed, progress=progress,
                start=fitted)
    return replace(grown, n_steps=fitted.n_steps + grown.n_steps, elapsed_s=fitted.elapsed_s + grown.elapsed_s)


def _holdout_score(result: FitResult, rule: LearningRule, cohort: CohortTensors, holdout: torch.Tensor) -> float:
    """Mean one-step-ahead log-likelihood (Gaussian filter) of a fit on its ``holdout`` trials."""
    score = gaussian_filter_loglik(cohort, rule, result.params, sigma=result.sigma,
                                   init_mean=result.weights_mean[:, 0],
                                   init_sd=np.maximum(result.weights_sd[:, 0], 1e-6),
                                   sigma_session=result.sigma_session)
    return float(score.loglik[(holdout & cohort.observed & cohort.valid).numpy()].mean())


def _fit_restart(train: CohortTensors, rule: NeuralRule, config: FitConfig, seed: int, progress: bool | None,
                 base: FitResult, holdout: torch.Tensor, grow: bool) -> tuple[FitResult, float]:
    """Fit one initialization of a network from ``base``; return the fit and its score on ``holdout``."""
    fitted = fit_network(train, rule, config, seed=seed, progress=progress, start=base, grow=grow)
    return fitted, _holdout_score(fitted, fitted.neural_rule(), train, holdout)


def fit_staged(name: str, cohort: CohortTensors, *, seed: int | None, budget_s: float, config: FitConfig | None,
                progress: bool | None, hidden: Sequence[int], activation: Activation, restarts: int,
                max_steps: int | None, start: FitResult | None, parallel: ParallelConfig | None = None
                ) -> FittedModel:
    """Fit the parametric stage of ``name``, then its network warm-started there.

    A hybrid's network starts at exactly zero on top of its fitted parametric rule. A plain ``mlp`` / ``gru``
    starts as an MLP distilled from a fitted :data:`~learnrules.rule_names.TEACHER`
    (:func:`~learnrules.inference.variational.distill.distill`). A GRU rule is fitted as its MLP first, then
    grown into the GRU (:func:`fit_network`); ``start`` may then be that MLP stage's fit (:func:`mlp_stage`),
    otherwise it is a fit of the parametric stage. Each network stage is capped at ``budget_s`` seconds. With
    ``restarts`` > 1 every initialization (seeds ``seed``, ``seed + 1``, ...) is fitted with a share of each
    animal's sessions held out of the likelihood (:func:`holdout_sessions`), where ``parallel`` says; the best
    on those sessions is then fitted on all trials from where it stopped.
    """
    began = time.perf_counter()
    base_name, kind = split_rule_name(name)
    first = stage_one(name)
    base_rule = build_rule(first, cohort.n_features)
    grow = kind == "gru"
    net_config = replace(NEURAL_FIT_CONFIG, time_budget_s=budget_s, max_steps=max_steps or NEURAL_FIT_CONFIG.max_steps)
    if restarts > 1:
        start = None  # the initializations' parametric stage leaves sessions out: it is fitted here
    if grow and start is not None and start.rule_name != base_rule.name:
        return _grow_from(name, cohort, start, net_config, seed=seed, progress=progress, began=began)
    if start is not None and (start.rule_name != base_rule.name or start.subjects != cohort.subjects):
        raise ValueError(f"start= must be a {base_rule.name} fit of the same animals, got a {start.rule_name} fit "
                         f"of {len(start.subjects)} animals")
    base_config = replace(config or FitConfig(), param_posterior="none")
    notes = [f"started at the {first} fit"]

    def network(run_seed: int | None, base: FitResult, data: CohortTensors) -> NeuralRule:
        """Return the MLP (or MLP hybrid) a fit starts as; a GRU rule is grown from it once it is fitted."""
        mlp = network_part("mlp", cohort.n_features, seed=run_seed, hidden=hidden, activation=activation)
        if base_name != "zero":
            return HybridRule(base_rule, mlp, base_name=base_name)
        mlp, residual = distill(mlp, base_rule, as_params(base.params, DTYPE), data,
                                torch.as_tensor(base.weights_mean))
        notes.append(f"distilled from it (relative residual {residual:.3f})")
        return mlp

    validation: dict[str, float] = {}
    if restarts == 1:
        base = start or fit(cohort, rule=base_rule, config=base_config, seed=seed, progress=progress)
        result = fit_network(cohort, network(seed, base, cohort), net_config, seed=seed, progress=progress,
                             start=base, grow=grow)
    else:
        holdout = holdout_sessions(cohort, seed=seed)
        train = replace(cohort, held_out=holdout if cohort.held_out is None else cohort.held_out | holdout)
        base = fit(train, rule=base_rule, config=base_config, seed=seed, progress=progress)
        parallel = parallel or ParallelConfig()
        seeds = [i if seed is None else seed + i for i in range(restarts)]
        tasks = [Task(f"{name} initialization {s}", _fit_restart,
                      (train, network(s, base, train), net_config, s, progress if parallel.in_process else False,
                       base, holdout, grow)) for s in seeds]
        fits = {}
        for run_seed, (fitted, score) in zip(seeds, run_restarts(tasks, parallel, progress), strict=True):
            fits[run_seed] = fitted
            validation[f"heldout_ll_seed_{run_seed}"] = score
            logger.info("%s initialization %d: held-out LL %.5f", name, run_seed, score)
        scores = {s: validation[f"heldout_ll_seed_{s}"] for s in fits}
        chosen = max(scores, key=scores.get)
        validation |= {"heldout_ll": scores[chosen], "heldout_spread": max(scores.values()) - min(scores.values()),
                       "heldout_share": float(holdout.sum() / cohort.fitted.sum())}
        result = fit(cohort, rule=fits[chosen].neural_rule(), config=net_config, seed=chosen, progress=progress,
                     start=fits[chosen])
    if grow:
        notes.append(f"fitted as {mlp_stage(name)}, then grown into the GRU")
    elapsed = time.perf_counter() - began
    result = replace(result, elapsed_s=elapsed)
    notes[0] += f" (ELBO {base.elbo:.2f})"
    notes.append(_network_note(result, elapsed) + " in all")
    if restarts > 1:
        notes.append(f"best of {restarts} initializations on held-out sessions (spread "
                     f"{validation['heldout_spread']:.5f} nats/trial)")
    return FittedModel(name, result.neural_rule(), result, "variational", "; ".join(dict.fromkeys(notes)),
                       validation)


def _grow_from(name: str, cohort: CohortTensors, start: FitResult, config: FitConfig, *, seed: int | None,
               progress: bool | None, began: float) -> FittedModel:
    """Fit the GRU rule ``name`` grown from ``start``, a fit of its MLP stage to the same animals."""
    base_name = split_rule_name(name)[0]
    expected = "MLPRule" if base_name == "zero" else f"{build_rule(base_name, cohort.n_features).name}+MLP"
    rule = start.neural_rule()
    if rule is None or start.rule_name != expected or start.subjects != cohort.subjects:
        first = build_rule(stage_one(name), cohort.n_features).name
        raise ValueError(f"start= must be a {first} or {expected} fit of the same animals, got a {start.rule_name} "
                         f"fit of {len(start.subjects)} animals")
    result = fit(cohort, rule=grow_gru(rule, seed=seed), config=config, seed=seed, progress=progress, start=start)
    elapsed = time.perf_counter() - began
    result = replace(result, elapsed_s=elapsed)
    note = f"grown from the {mlp_stage(name)} fit (ELBO {start.elbo:.2f}); {_network_note(result, elapsed)}"
    return FittedModel(name, result.neural_rule(), result, "variational", note, {})


def _network_note(result: FitResult, elapsed: float) -> str:
    """Return the note's account of a network stage: steps, convergence, ELBO and seconds."""
    return (f"network fit by L-BFGS, {result.n_steps} steps, "
            + ("converged" if result.converged else "NOT converged (step or time cap)")
            + f", ELBO {result.elbo:.2f}, {elapsed:.0f} s")
