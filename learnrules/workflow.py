"""Library-level steps behind the command line: build a rule by name, fit it, score held-out data.

Every fit comes back as a :class:`FittedModel` holding a :class:`~learnrules.inference.result.FitResult`,
whatever the method, so writing outputs, scoring and plotting never branch on it:

- parametric rules and the random walk (``zero``): the structured variational fit
  (:func:`learnrules.inference.variational.fit`);
- neural rules (``mlp``, ``gru``) and hybrids (``reinforce-baseline+mlp``, ``delta+gru``: any fittable
  registry rule before the ``+``, :mod:`learnrules.rule_names`): fitted in two stages, the parametric rule first,
  then the network warm-started there (:func:`learnrules.network_fit.fit_staged`); or the deterministic
  rollout fit (``method="rollout"``: sigma = 0, Liu et al. 2025;
  :func:`learnrules.inference.rollout.rollout_fit.fit_rollout`, :data:`LBFGS_ROLLOUT_CONFIG`), whose rolled-out
  weights fill the result with zero posterior sd and zero noise.

Scores on new data come from :class:`~learnrules.fitted_model.FitPredictor`. The names of the modules this one
draws on are re-exported here.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd
import torch

from learnrules.behavior.trials import TrialData
from learnrules.fitted_model import DTYPE, FitPredictor, FittedModel, score_summary
from learnrules.inference.evaluation.crossval import CV_COLUMNS, Fold, animal_folds, score_fold, session_folds
from learnrules.inference.evaluation.evaluate import gaussian_filter_loglik
from learnrules.inference.result import FitResult
from learnrules.inference.rollout.early_stopping import holdout_sessions
from learnrules.inference.rollout.rollout import rollout_weights
from learnrules.inference.rollout.rollout_fit import RolloutConfig, RolloutResult, fit_rollout
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import Activation, GRURule, NeuralRule
from learnrules.network_fit import (
    MAX_UPDATE,
    NEURAL_ACTIVATION,
    NEURAL_FIT_CONFIG,
    NEURAL_HIDDEN,
    fit_staged,
    mlp_stage,
    network_part,
    run_restarts,
)
from learnrules.parallel import ParallelConfig, Task, TaskFailure, progress_bar, run_tasks
from learnrules.rule_names import (
    NEURAL_RULES,
    RULE_NAMES,
    TEACHER,
    build_rule,
    check_rule_name,
    is_neural,
    parse_list,
    split_rule_name,
    stage_one,
)

__all__ = ["ADAM_ROLLOUT_CONFIG", "LBFGS_ROLLOUT_CONFIG", "MAX_UPDATE", "NEURAL_ACTIVATION", "NEURAL_FIT_CONFIG",
           "NEURAL_HIDDEN", "NEURAL_RULES", "RULE_NAMES", "TEACHER", "FitsFailed", "FittedModel", "FitPredictor",
           "build_rule", "check_rule_name", "cross_validate_rules", "fit_model", "is_neural", "network_part",
           "parse_list", "rollout_to_result", "score_summary", "split_rule_name", "stage_one"]

logger = logging.getLogger(__name__)

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
    for i, fitted in enumerate(run_restarts(tasks, parallel, progress)):
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
              parallel: ParallelConfig | None = None, pooling: str = "shared") -> FittedModel:
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
        start there); for a GRU rule, also a fit of its MLP rule (:func:`mlp_stage`), which it is grown from.
        Ignored with ``restarts`` > 1, whose parametric stage leaves sessions out.
    parallel : ParallelConfig, optional
        Where the ``restarts`` initializations are fitted (default: one after another, here); the result does
        not depend on it.
    pooling : {"shared", "hierarchical", "independent"}
        Parametric rules: one set of parameters for all animals, or each animal its own, partially pooled or
        independent (see :mod:`learnrules.inference.variational.pooling`).

    Returns
    -------
    FittedModel
    """
    check_rule_name(name)
    if pooling != "shared" and (is_neural(name) or method != "variational"):
        raise ValueError(f"pooling={pooling!r} applies to parametric rules, not {name!r}")
    if max_steps is not None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        config = replace(config or FitConfig(), max_steps=max_steps)
    cohort = CohortTensors.from_trials(data, tuple(features), dtype=DTYPE)
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
        return fit_staged(name, cohort, seed=seed, budget_s=budget_s, config=config, progress=progress,
                           hidden=hidden or NEURAL_HIDDEN, activation=activation or NEURAL_ACTIVATION,
                           restarts=restarts, max_steps=max_steps, start=start, parallel=parallel)
    rule = build_rule(name, cohort.n_features)
    result = fit(cohort, rule=rule, config=config, seed=seed, progress=progress, pooling=pooling)
    note = "" if result.converged else f"not converged after {result.n_steps} steps ({result.elapsed_s:.0f} s)"
    return FittedModel(name, rule, result, "variational", note)


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


def _starts(rules: Sequence[str]) -> dict[str, str]:
    """Return the fit each neural rule of ``rules`` starts from (a GRU rule: its MLP rule, when compared too)."""
    out = {}
    for name in rules:
        if is_neural(name):
            grown = split_rule_name(name)[1] == "gru" and mlp_stage(name) in rules
            out[name] = mlp_stage(name) if grown else stage_one(name)
    return out


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
    parametric rule in ``rules`` and every neural or hybrid rule that starts from it share one fit per fold, and
    a GRU rule starts from the fold's fit of its MLP rule when that is compared too (:func:`mlp_stage`).
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
    starts_from = _starts(rules)
    names = dict.fromkeys([*(stage_one(n) if is_neural(n) else n for n in rules), *rules])
    waves = [[n for n in names if n not in starts_from]]
    done = set(waves[0])
    while nxt := [n for n in rules if n not in done and starts_from.get(n) in done]:
        waves.append(nxt)
        done.update(nxt)
    needed = set(starts_from.values())
    rows: dict[tuple[int, str], pd.DataFrame | None] = {}
    fits: dict[tuple[int, str], FitResult | None] = {}
    failures: dict[tuple[int, str], TaskFailure] = {}
    with progress_bar(len(folds) * sum(map(len, waves)), progress=progress) as bar:
        for wave in waves:  # each wave's fits start from the fits of the waves before it
            keys, tasks = [], []
            for f, n in ((f, n) for f in range(len(folds)) for n in wave):
                label, first = f"rule {n}, fold {folds[f].index}", starts_from.get(n)
                if first is not None and (f, first) in failures:
                    stage = "MLP" if is_neural(first) else "parametric"
                    failures[f, n] = TaskFailure(label, f"its {stage} stage {first} failed", "")
                    bar.update(1)
                    continue
                keys.append((f, n))
                tasks.append(Task(label, _fit_and_score, (fit, folds[f], n, None if first is None else fits[f, first],
                                                          n in rules, n in needed)))
            for key, out in zip(keys, run_tasks(tasks, parallel, bar=bar), strict=True):
                if isinstance(out, TaskFailure):
                    failures[key] = out
                else:
                    rows[key], fits[key] = out
    ordered = [rows[f, n] for f in range(len(folds)) for n in rules if (f, n) in rows]
    table = pd.concat(ordered, ignore_index=True) if ordered else pd.DataFrame(columns=CV_COLUMNS)
    if failures:
        raise FitsFailed([failures[f, n] for f in range(len(folds)) for n in rules if (f, n) in failures], table)
    return table


