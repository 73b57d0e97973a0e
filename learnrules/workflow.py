"""Library-level steps behind the command line: build a rule by name, fit it, score held-out data.

Every fit comes back as a :class:`FittedModel` holding a :class:`~learnrules.inference.result.FitResult`,
whatever the method, so writing outputs, scoring and plotting never branch on it:

- parametric rules and the random walk (``zero``): the structured variational fit
  (:func:`learnrules.inference.variational.fit`);
- neural rules (``mlp``, ``gru``) and hybrids (``reinforce-baseline+mlp``, ``delta+gru``: any fittable
  registry rule before the ``+``): fitted in two stages, the parametric rule first, then its hybrid with a
  network whose bounded output starts at zero (:class:`~learnrules.models.hybrid.HybridRule`; a plain ``mlp`` /
  ``gru`` is instead a network distilled from a fitted :data:`TEACHER`), warm-started at that fit and optimized
  with the rule's parameters and the noise by full-batch L-BFGS to a tolerance (:data:`NEURAL_FIT_CONFIG`); or
  the deterministic
  rollout fit (``method="rollout"``: sigma = 0, Liu et al. 2025;
  :func:`learnrules.inference.rollout.rollout_fit.fit_rollout`, :data:`LBFGS_ROLLOUT_CONFIG`), whose rolled-out weights
  fill the result with zero posterior sd and zero noise.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import torch

from learnrules.behavior.trials import TrialData
from learnrules.inference.evaluation.crossval import CV_COLUMNS, Fold, animal_folds, score_fold, session_folds
from learnrules.inference.evaluation.evaluate import PredictiveScore, gaussian_filter_loglik
from learnrules.inference.result import FitResult
from learnrules.inference.rollout.early_stopping import holdout_sessions
from learnrules.inference.rollout.rollout import rollout_weights
from learnrules.inference.rollout.rollout_fit import RolloutConfig, RolloutResult, fit_rollout
from learnrules.inference.variational.distill import distill
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.hybrid import HybridRule
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import Activation, GRURule, MLPRule, NeuralRule
from learnrules.models.rule import LearningRule, as_params
from learnrules.other_rules.registry import RULES, make_rule
from learnrules.parallel import ParallelConfig, Task, TaskFailure, progress_bar, run_tasks

__all__ = ["ADAM_ROLLOUT_CONFIG", "LBFGS_ROLLOUT_CONFIG", "MAX_UPDATE", "NEURAL_ACTIVATION", "NEURAL_FIT_CONFIG",
           "NEURAL_HIDDEN", "NEURAL_RULES", "RULE_NAMES", "TEACHER", "FitsFailed", "FittedModel", "FitPredictor",
           "build_rule", "check_rule_name", "cross_validate_rules", "fit_model", "is_neural", "network_part",
           "parse_list", "rollout_to_result", "split_rule_name", "stage_one"]

logger = logging.getLogger(__name__)

NEURAL_RULES = ("mlp", "gru")
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
NEURAL_HIDDEN = (16, 16)
# The parametric rule a plain mlp / gru is distilled from before its variational fit.
TEACHER = "reinforce-baseline"
NEURAL_ACTIVATION: Activation = "tanh"  # smooth: L-BFGS's curvature pairs and line search assume it
_DTYPE = torch.float64


def split_rule_name(name: str) -> tuple[str, str | None]:
    """Split a rule name into its parametric base and its network kind.

    ``"reinforce-baseline+mlp"`` -> ``("reinforce-baseline", "mlp")``; ``"mlp"`` -> ``("zero", "mlp")``;
    ``"delta"`` -> ``("delta", None)``. The name is not checked (see :func:`check_rule_name`).
    """
    if name in NEURAL_RULES:
        return "zero", name
    base, plus, kind = name.partition("+")
    return (base, kind) if plus else (name, None)


def stage_one(name: str) -> str:
    """Return the parametric rule a neural or hybrid rule's fit starts from (:data:`TEACHER` for a plain network)."""
    base = split_rule_name(name)[0]
    return TEACHER if base == "zero" else base


def check_rule_name(name: str) -> str:
    """Return ``name`` if it names a rule :func:`fit_model` can fit, else raise a ValueError listing the names.

    Known names: :data:`RULE_NAMES`, and ``BASE+mlp`` / ``BASE+gru`` for a fittable registry rule ``BASE``.
    """
    base, kind = split_rule_name(name)
    fittable = base in RULES and RULES[base].fittable
    if name in RULE_NAMES or (fittable and kind in NEURAL_RULES):
        return name
    hybrids = ", ".join(f"{n}+mlp" for n in RULES if RULES[n].fittable and n != "zero")
    raise ValueError(f"unknown rule {name!r}; known rules: {', '.join(RULE_NAMES)}, and hybrids of a parametric "
                     f"rule and a network: {hybrids} (or +gru)")


def is_neural(name: str) -> bool:
    """Return whether the rule called ``name`` has a network (``mlp``, ``gru`` or a hybrid)."""
    return split_rule_name(name)[1] is not None


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


def _run_restarts(tasks: Sequence[Task], parallel: ParallelConfig, progress: bool | None) -> list:
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


def _fit_neural(make: Callable[[int | None], NeuralRule], name: str, cohort: CohortTensors, *, seed: int | None,
                budget_s: float, progress: bool | None, restarts: int, max_epochs: int | None = None,
                parallel: ParallelConfig | None = None) -> FittedModel:
    """Fit ``restarts`` initializations (seeds ``seed``, ``seed + 1``, ...) by rollout; keep the best one.

    "Best" is judged on the sessions held out of the loss for early stopping, the same for every fit. The
    initializations are fitted where ``parallel`` says (default: one after another, here).
    """
    holdout = holdout_sessions(cohort, seed=seed)
    share = float(holdout.sum() / cohort.fitted.sum())
    parallel = parallel or ParallelConfig()
    tasks = []
    for i in range(restarts):
        run_seed = None if seed is None else seed + i
        rule = make(run_seed)
        config = ADAM_ROLLOUT_CONFIG if isinstance(rule, GRURule) else LBFGS_ROLLOUT_CONFIG
        config = replace(config, time_budget_s=budget_s, epochs=max_epochs or config.epochs)
        task = functools.partial(fit_rollout, config=config, holdout=holdout, seed=run_seed,
                                 progress=progress if parallel.in_process else False)
        tasks.append(Task(f"{name} initialization {run_seed if run_seed is not None else i}", task, (cohort, rule)))
    fits = {}
    for i, fitted in enumerate(_run_restarts(tasks, parallel, progress)):
        run_seed = None if seed is None else seed + i
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
              seed: int | None = None, budget_s: float = 900.0, config: FitConfig | None = None,
              method: Literal["variational", "rollout"] = "variational", progress: bool | None = None,
              hidden: Sequence[int] | None = None, activation: Activation | None = None,
              restarts: int = 1, max_steps: int | None = None, start: FitResult | None = None,
              parallel: ParallelConfig | None = None) -> FittedModel:
    """Fit the rule called ``name`` to ``data``.

    Parameters
    ----------
    data : TrialData
        The animals.
    name : str
        One of :data:`RULE_NAMES`, or a hybrid ``BASE+mlp`` / ``BASE+gru`` (see :func:`check_rule_name`).
    features : sequence of str
        Design-matrix features.
    seed : int, optional
        Seed of the fit (and of a neural rule's initialization).
    budget_s : float
        Wall-time cap of a neural rule's network fit, seconds (a variational fit normally stops on its
        tolerance first; a rollout fit on its held-out sessions).
    config : FitConfig, optional
        Options of the variational fit of a parametric rule, and of a hybrid's parametric stage (the network
        stage uses :data:`NEURAL_FIT_CONFIG`).
    method : {"variational", "rollout"}
        How to fit a plain ``mlp`` / ``gru`` (parametric rules and hybrids are always fitted variationally).
    progress : bool, optional
        Progress bars (None: when stderr is a terminal).
    hidden : sequence of int, optional
        Hidden-layer widths of a neural rule's update network (default :data:`NEURAL_HIDDEN` for variational
        fits, (32, 32) for rollout fits).
    activation : {"relu", "tanh", "silu"}, optional
        Its nonlinearity (default :data:`NEURAL_ACTIVATION` for variational fits, relu for rollout fits).
    restarts : int
        Neural and hybrid rules: initializations to fit (seeds ``seed``, ``seed + 1``, ...), keeping the best on
        sessions held out of the likelihood; the spread of their scores is reported in ``validation``.
    max_steps : int, optional
        Cap on the optimizer steps of every variational stage (and on the epochs of a rollout fit); default:
        the configs' own.
    start : FitResult, optional
        Neural and hybrid rules: an existing fit of their parametric stage (:func:`stage_one`) to the same
        data, used instead of fitting it again (``compare`` fits it once per fold for all the rules that
        start there). Ignored with ``restarts`` > 1, whose parametric stage leaves sessions out.
    parallel : ParallelConfig, optional
        Where the ``restarts`` initializations are fitted (default: one after another, here); the result does
        not depend on it.

    Returns
    -------
    FittedModel
    """
    check_rule_name(name)
    if max_steps is not None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        config = replace(config or FitConfig(), max_steps=max_steps)
    cohort = CohortTensors.from_trials(data, tuple(features), dtype=_DTYPE)
    if method not in ("variational", "rollout"):
        raise ValueError(f"method must be 'variational' or 'rollout', got {method!r}")
    if method == "rollout" and name not in NEURAL_RULES and is_neural(name):
        raise ValueError(f"method='rollout' fits a plain mlp or gru rule, not the hybrid {name!r}")
    if restarts < 1 or (restarts > 1 and not is_neural(name)):
        raise ValueError(f"restarts must be >= 1, and > 1 only for a neural or hybrid rule (its held-out sessions "
                         f"choose between the fits), got {restarts} for {name!r}")
    if name in NEURAL_RULES and method == "rollout":
        def make(run_seed: int | None) -> NeuralRule:
            return build_rule(name, cohort.n_features, seed=run_seed, hidden=hidden or (32, 32),
                              activation=activation or "relu")
        return _fit_neural(make, name, cohort, seed=seed, budget_s=budget_s, progress=progress, restarts=restarts,
                           max_epochs=max_steps, parallel=parallel)
    if is_neural(name):
        return _fit_staged(name, cohort, seed=seed, budget_s=budget_s, config=config, progress=progress,
                           hidden=hidden or NEURAL_HIDDEN, activation=activation or NEURAL_ACTIVATION,
                           restarts=restarts, max_steps=max_steps, start=start, parallel=parallel)
    rule = build_rule(name, cohort.n_features)
    result = fit(cohort, rule=rule, config=config, seed=seed, progress=progress)
    note = "" if result.converged else f"not converged after {result.n_steps} steps ({result.elapsed_s:.0f} s)"
    return FittedModel(name, rule, result, "variational", note)


def network_part(kind: str, n_features: int, *, seed: int | None, hidden: Sequence[int] = NEURAL_HIDDEN,
                 activation: Activation = NEURAL_ACTIVATION) -> NeuralRule:
    """Return the network of a variational neural or hybrid fit: bounded by :data:`MAX_UPDATE`, starting at zero.

    A GRU backpropagates through whole sequences (``bptt_window=None``): L-BFGS needs the exact gradient.
    """
    if kind == "mlp":
        return MLPRule(n_features, hidden=tuple(hidden), activation=activation, max_update=MAX_UPDATE, seed=seed)
    return GRURule(n_features, hidden=tuple(hidden), activation=activation, max_update=MAX_UPDATE, seed=seed,
                   bptt_window=None)


def _holdout_score(result: FitResult, rule: LearningRule, cohort: CohortTensors, holdout: torch.Tensor) -> float:
    """Mean one-step-ahead log-likelihood (Gaussian filter) of a fit on its ``holdout`` trials."""
    score = gaussian_filter_loglik(cohort, rule, result.params, sigma=result.sigma,
                                   init_mean=result.weights_mean[:, 0],
                                   init_sd=np.maximum(result.weights_sd[:, 0], 1e-6),
                                   sigma_session=result.sigma_session)
    return float(score.loglik[(holdout & cohort.observed & cohort.valid).numpy()].mean())


def _fit_restart(train: CohortTensors, rule: NeuralRule, config: FitConfig, seed: int, progress: bool | None,
                 base: FitResult, holdout: torch.Tensor) -> tuple[FitResult, float]:
    """Fit one initialization of a network from ``base``; return the fit and its score on ``holdout``."""
    fitted = fit(train, rule=rule, config=config, seed=seed, progress=progress, start=base)
    return fitted, _holdout_score(fitted, fitted.neural_rule(), train, holdout)


def _fit_staged(name: str, cohort: CohortTensors, *, seed: int | None, budget_s: float, config: FitConfig | None,
                progress: bool | None, hidden: Sequence[int], activation: Activation, restarts: int,
                max_steps: int | None, start: FitResult | None, parallel: ParallelConfig | None = None
                ) -> FittedModel:
    """Fit the parametric stage of ``name``, then its network warm-started there.

    A hybrid's network starts at exactly zero on top of its fitted parametric rule. A plain ``mlp`` / ``gru``
    starts as an MLP distilled from a fitted :data:`TEACHER` (:func:`~learnrules.inference.variational.distill.distill`;
    the GRU reads its state through zero weights, :meth:`GRURule.from_mlp`). With ``restarts`` > 1 every
    initialization (seeds ``seed``, ``seed + 1``, ...) is fitted with a share of each animal's sessions held out
    of the likelihood (:func:`holdout_sessions`), where ``parallel`` says; the best on those sessions is then
    fitted on all trials from where it stopped.
    """
    began = time.perf_counter()
    base_name, kind = split_rule_name(name)
    first = stage_one(name)
    base_rule = build_rule(first, cohort.n_features)
    if start is not None and (start.rule_name != base_rule.name or start.subjects != cohort.subjects):
        raise ValueError(f"start= must be a {base_rule.name} fit of the same animals, got a {start.rule_name} fit "
                         f"of {len(start.subjects)} animals")
    base_config = replace(config or FitConfig(), param_posterior="none")
    net_config = replace(NEURAL_FIT_CONFIG, time_budget_s=budget_s, max_steps=max_steps or NEURAL_FIT_CONFIG.max_steps)
    notes = [f"started at the {first} fit"]

    def network(run_seed: int | None, base: FitResult, data: CohortTensors) -> NeuralRule:
        if base_name != "zero":
            part = network_part(kind, cohort.n_features, seed=run_seed, hidden=hidden, activation=activation)
            return HybridRule(base_rule, part, base_name=base_name)
        mlp = network_part("mlp", cohort.n_features, seed=run_seed, hidden=hidden, activation=activation)
        mlp, residual = distill(mlp, base_rule, as_params(base.params, _DTYPE), data,
                                torch.as_tensor(base.weights_mean))
        notes.append(f"distilled from it (relative residual {residual:.3f})")
        return mlp if kind == "mlp" else GRURule.from_mlp(mlp, seed=run_seed, bptt_window=None)

    validation: dict[str, float] = {}
    if restarts == 1:
        base = start or fit(cohort, rule=base_rule, config=base_config, seed=seed, progress=progress)
        result = fit(cohort, rule=network(seed, base, cohort), config=net_config, seed=seed, progress=progress,
                     start=base)
    else:
        holdout = holdout_sessions(cohort, seed=seed)
        train = replace(cohort, held_out=holdout if cohort.held_out is None else cohort.held_out | holdout)
        base = fit(train, rule=base_rule, config=base_config, seed=seed, progress=progress)
        parallel = parallel or ParallelConfig()
        seeds = [i if seed is None else seed + i for i in range(restarts)]
        tasks = [Task(f"{name} initialization {s}", _fit_restart,
                      (train, network(s, base, train), net_config, s, progress if parallel.in_process else False,
                       base, holdout)) for s in seeds]
        fits = {}
        for run_seed, (fitted, score) in zip(seeds, _run_restarts(tasks, parallel, progress), strict=True):
            fits[run_seed] = fitted
            validation[f"heldout_ll_seed_{run_seed}"] = score
            logger.info("%s initialization %d: held-out LL %.5f", name, run_seed, score)
        scores = {s: validation[f"heldout_ll_seed_{s}"] for s in fits}
        chosen = max(scores, key=scores.get)
        validation |= {"heldout_ll": scores[chosen], "heldout_spread": max(scores.values()) - min(scores.values()),
                       "heldout_share": float(holdout.sum() / cohort.fitted.sum())}
        result = fit(cohort, rule=fits[chosen].neural_rule(), config=net_config, seed=chosen, progress=progress,
                     start=fits[chosen])
    elapsed = time.perf_counter() - began
    result = replace(result, elapsed_s=elapsed)
    notes[0] += f" (ELBO {base.elbo:.2f})"
    notes.append(f"network fit by L-BFGS, {result.n_steps} steps, "
                 + ("converged" if result.converged else "NOT converged (step or time cap)")
                 + f", ELBO {result.elbo:.2f}, {elapsed:.0f} s in all")
    if restarts > 1:
        notes.append(f"best of {restarts} initializations on held-out sessions (spread "
                     f"{validation['heldout_spread']:.5f} nats/trial)")
    return FittedModel(name, result.neural_rule(), result, "variational", "; ".join(dict.fromkeys(notes)),
                       validation)


class FitsFailed(RuntimeError):
    """Some fits of a cross-validation raised; the others finished.

    Attributes
    ----------
    failures : list of TaskFailure
        One per failed fit, labelled ``rule NAME, fold I`` (a neural or hybrid rule whose parametric stage
        failed in that fold is listed too).
    completed : pandas.DataFrame
        The cross-validation rows of the fits that finished (columns as :func:`cross_validate_rules`).
    """

    def __init__(self, failures: Sequence[TaskFailure], completed: pd.DataFrame) -> None:
        self.failures = list(failures)
        self.completed = completed
        super().__init__(f"{len(self.failures)} fit(s) failed: " + "; ".join(str(f) for f in self.failures))


def _fit_and_score(fit: Callable[[TrialData, str, FitResult | None], FittedModel], fold: Fold, name: str,
                   start: FitResult | None, score: bool, keep: bool) -> tuple[pd.DataFrame | None, FitResult | None]:
    """Fit ``name`` on ``fold``'s training data; return its held-out rows (if ``score``) and its fit (if ``keep``)."""
    model = fit(fold.train, name, start)
    return (score_fold(FitPredictor(model), fold, name) if score else None), (model.result if keep else None)


def cross_validate_rules(data: TrialData, rules: Sequence[str],
                         fit: Callable[[TrialData, str, FitResult | None], FittedModel], *,
                         folds: Sequence[Fold] | None = None, scheme: Literal["animals", "sessions"] = "animals",
                         k: int = 5, seed: int | None = 0, parallel: ParallelConfig | None = None,
                         progress: bool | None = False) -> pd.DataFrame:
    """Cross-validate ``rules``, fitting each fold's parametric stages once; the fits run in parallel.

    ``fit(train, name, start)`` fits one rule (``start``: the fold's fit of its parametric stage, for neural and
    hybrid rules; None otherwise), e.g. ``lambda train, name, start: fit_model(train, name, start=start)``. A
    parametric rule in ``rules`` and every neural or hybrid rule that starts from it share one fit per fold.
    The parametric fits of every fold run first, then the neural and hybrid fits, each an independent task
    (:func:`learnrules.parallel.run_tasks`) on the processes or the Dask cluster of ``parallel`` (default: one
    after another, here). Each fit gets the same arguments wherever it runs, so the table does not depend on
    where, or on how many workers: ``fit`` must be picklable (cloudpickle) for other processes and seed its own
    randomness. ``progress`` shows one bar over all fits (None: when stderr is a terminal).
    Other arguments and the returned table as :func:`~learnrules.inference.evaluation.crossval.cross_validate`.

    Raises
    ------
    FitsFailed
        If any fit raised, after all the others finished; it names each failed rule and fold and holds the
        finished fits' rows.
    """
    parallel = parallel or ParallelConfig()
    if folds is None:
        folds = animal_folds(data, k=k, seed=seed) if scheme == "animals" else session_folds(data, k=k, seed=seed)
    rules = list(rules)
    firsts = list(dict.fromkeys(stage_one(n) if is_neural(n) else n for n in rules))
    needed = {stage_one(n) for n in rules if is_neural(n)}
    seconds = [n for n in rules if is_neural(n)]
    rows: dict[tuple[int, str], pd.DataFrame | None] = {}
    failures: dict[tuple[int, str], TaskFailure] = {}
    with progress_bar(len(folds) * (len(firsts) + len(seconds)), progress=progress) as bar:
        keys = [(f, n) for f in range(len(folds)) for n in firsts]
        tasks = [Task(f"rule {n}, fold {folds[f].index}", _fit_and_score, (fit, folds[f], n, None, n in rules,
                                                                           n in needed)) for f, n in keys]
        starts = {}
        for key, out in zip(keys, run_tasks(tasks, parallel, bar=bar), strict=True):
            if isinstance(out, TaskFailure):
                failures[key] = out
            else:
                rows[key], starts[key] = out
        keys, tasks = [], []
        for f, n in ((f, n) for f in range(len(folds)) for n in seconds):
            label = f"rule {n}, fold {folds[f].index}"
            if (f, stage_one(n)) in failures:
                failures[f, n] = TaskFailure(label, f"its parametric stage {stage_one(n)} failed", "")
                bar.update(1)
            else:
                keys.append((f, n))
                tasks.append(Task(label, _fit_and_score, (fit, folds[f], n, starts[f, stage_one(n)], True, False)))
        for key, out in zip(keys, run_tasks(tasks, parallel, bar=bar), strict=True):
            if isinstance(out, TaskFailure):
                failures[key] = out
            else:
                rows[key] = out[0]
    ordered = [rows[f, n] for f in range(len(folds)) for n in rules if (f, n) in rows]
    table = pd.concat(ordered, ignore_index=True) if ordered else pd.DataFrame(columns=CV_COLUMNS)
    if failures:
        raise FitsFailed([failures[f, n] for f in range(len(folds)) for n in rules if (f, n) in failures], table)
    return table


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
        return gaussian_filter_loglik(cohort, self.model.scoring_rule, res.params, sigma=res.sigma, init_mean=mean,
                                      init_sd=np.maximum(sd, 1e-6), sigma_session=res.sigma_session)


def score_summary(score: PredictiveScore) -> dict[str, float]:
    """Return nats and bits per trial, accuracy and trial count of a score."""
    return {"nats_per_trial": score.nats_per_trial, "bits_per_trial": score.nats_per_trial / math.log(2.0),
            "accuracy": score.accuracy, "n_trials": score.n_trials}
