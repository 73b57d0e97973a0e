"""The ``fit``, ``simulate``, ``compare`` and ``recover`` commands.

Each takes parsed options, calls the library, writes its outputs and prints a short table. Argument parsing
lives in :mod:`learnrules.cli`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from learnrules.atomic import output_files, output_folder
from learnrules.behavior.degenerate import warn_degenerate
from learnrules.behavior.load import load_trials
from learnrules.behavior.trials import TrialData
from learnrules.inference.evaluation.crossval import compare_table
from learnrules.inference.evaluation.evaluate import gaussian_filter_loglik
from learnrules.inference.evaluation.missing_features import (
    HISTORY_FEATURES,
    history_feature_evidence,
    suggest_features,
)
from learnrules.inference.result import FitResult
from learnrules.inference.variational.fit import FitConfig
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural_grid import STIMULUS_FEATURES
from learnrules.models.rule import as_params
from learnrules.other_rules.registry import RULES, make_rule
from learnrules.outputs import write_fit, write_json
from learnrules.parallel import ParallelConfig
from learnrules.synthetic.cohort import SimulatedCohort, simulate_cohort
from learnrules.synthetic.recovery import (
    drift_rmse,
    task_stimuli,
    trajectory_correlation,
    update_rmse,
    visited_states,
)
from learnrules.synthetic.task import IBLTask
from learnrules.workflow import (
    FitPredictor,
    FitsFailed,
    FittedModel,
    check_rule_name,
    cross_validate_rules,
    fit_model,
    is_neural,
    parse_list,
    score_summary,
)

__all__ = ["check_network_options", "check_session_folds", "cmd_compare", "cmd_fit", "cmd_recover", "cmd_simulate",
           "emit", "progress_flag", "run_compare"]

logger = logging.getLogger(__name__)


def emit(text: str) -> None:
    """Write command output (tables, where files went) to stdout."""
    sys.stdout.write(text.rstrip("\n") + "\n")


def progress_flag(args: argparse.Namespace) -> bool | None:
    """Progress bars: off with ``--quiet``, else on when stderr is a terminal."""
    return False if args.quiet else None


def _table(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _load(args: argparse.Namespace, features: Sequence[str]) -> TrialData:
    data = _read_trials(args)
    warn_degenerate(data, features, one_sided=False)  # load_trials warns of one-sided animals itself
    return data


def check_network_options(args: argparse.Namespace, rules: Sequence[str]) -> None:
    """Refuse network options when no rule in ``rules`` has a network: they would be ignored without a word.

    The options: ``--hidden``, ``--activation``, ``--restarts`` > 1 and ``--method rollout``.
    """
    options = (("--hidden", args.hidden is not None), ("--activation", args.activation is not None),
               ("--restarts", args.restarts > 1), ("--method rollout", args.method == "rollout"))
    given = [name for name, used in options if used]
    if given and not any(is_neural(rule) for rule in rules):
        raise ValueError(f"{', '.join(given)} set the network of an mlp, gru or hybrid rule (e.g. "
                         f"reinforce-baseline+mlp); {', '.join(repr(r) for r in rules)} has none")


def check_session_folds(data: TrialData, folds: int) -> None:
    """Refuse held-out-session folds that cannot hold anything out: single-session animals, empty folds."""
    counts = {a.subject: a.n_sessions for a in data}
    single = [s for s, c in counts.items() if c < 2]
    if single:
        shown = ", ".join(repr(s) for s in single[:5]) + (f" and {len(single) - 5} more" if len(single) > 5 else "")
        raise ValueError(f"held-out sessions: animal(s) {shown} have one session only, which a fold would hold out "
                         "of its own fit entirely; drop them, or hold out whole animals (compare --scheme animals)")
    most = max(counts.values())
    if most < folds:
        raise ValueError(f"--folds {folds}: no animal has more than {most} sessions, so {folds - most} of the "
                         f"{folds} folds would hold out nothing; use --folds {most} or fewer")


def _read_trials(args: argparse.Namespace) -> TrialData:
    if args.one_subject is None and args.one_cache is None and args.one_protocol is None:
        if args.table is None:
            raise ValueError("give a trial table (CSV or Parquet), or --one-subject NAME --one-cache DIR")
        return load_trials(args.table, nogo=args.nogo, coding=args.coding, session_order=args.session_order)
    if args.table is not None or not args.one_subject or args.one_cache is None:
        raise ValueError("--one-subject NAME and --one-cache DIR go together, instead of a trial table")
    from learnrules.behavior.one import load_one, open_one

    try:
        one = open_one(args.one_cache)
    except ImportError as err:  # the ibl extra is not installed: a one-line error, not a traceback
        raise ValueError(str(err)) from None
    return load_one(one, args.one_subject, protocol=args.one_protocol, nogo=args.nogo)


def _fit(data: TrialData, name: str, args: argparse.Namespace, features: Sequence[str], *,
         intervals: bool = True, start: FitResult | None = None, parallel: ParallelConfig | None = None
         ) -> FittedModel:
    if getattr(args, "draws", None) is not None and args.draws < 1:  # checked before a fit that may take minutes
        raise ValueError(f"--draws must be >= 1, got {args.draws}")
    return fit_model(data, name, features=features, seed=args.seed, budget_s=args.budget,
                     config=FitConfig(param_posterior="laplace" if intervals else "none"), max_steps=args.max_steps,
                     method=args.method, progress=progress_flag(args), hidden=args.hidden,
                     activation=args.activation, restarts=args.restarts if is_neural(name) else 1, start=start,
                     parallel=parallel, pooling=_pooling(args, name))


def _pooling(args: argparse.Namespace, name: str) -> str:
    """``--pooling`` for a parametric rule with parameters; the shared fit for the others (compare's baselines)."""
    pooling = getattr(args, "pooling", "shared")
    if pooling == "shared" or is_neural(name) or not make_rule(name).parameters:
        return "shared"
    return pooling


def run_compare(data: TrialData, rules: Sequence[str], args: argparse.Namespace, features: Sequence[str], *,
                scheme: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-validate ``rules`` on ``data``; return the per-animal table and the comparison table.

    In each fold a parametric rule is fitted once: the neural and hybrid rules that start from it (and the rule
    itself, when compared) share that fit. The fits run on ``--jobs`` processes or the ``--scheduler`` cluster.
    """
    quiet = argparse.Namespace(**{**vars(args), "quiet": True})  # one bar over all fits, none per fit
    parallel = _parallel(args)
    cv = cross_validate_rules(data, rules, functools.partial(_fold_fit, args=quiet, features=tuple(features)),
                              scheme=scheme, k=args.folds, seed=args.seed, parallel=parallel,
                              progress=progress_flag(args))
    return cv, compare_table(cv)


def _parallel(args: argparse.Namespace) -> ParallelConfig:
    """Where independent fits run: ``--jobs`` processes here, or the ``--scheduler`` Dask cluster."""
    return ParallelConfig(jobs=getattr(args, "jobs", 1), scheduler=getattr(args, "scheduler", None))


def _fold_fit(train: TrialData, name: str, start: FitResult | None, *, args: argparse.Namespace,
              features: Sequence[str]) -> FittedModel:
    return _fit(train, name, args, features, intervals=False, start=start)


def _fit_lines(model: FittedModel, data: TrialData, out: Path) -> str:
    res = model.result
    head = pd.DataFrame([{"rule": model.name, "method": model.method, "animals": data.n_animals,
                          "trials": data.n_trials, "ELBO/trial": res.elbo / max(data.n_trials, 1),
                          "steps": res.n_steps, "seconds": res.elapsed_s}])
    lines = [_table(head)]
    if not res.parameters.empty:
        lines += ["", _table(res.parameters)]
    if model.note:
        lines += ["", f"note: {model.note}"]
    return "\n".join(lines + ["", f"outputs in {out}/"])


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit one rule to a trial table and write its outputs (whole, or not at all: see :mod:`learnrules.atomic`)."""
    features = parse_list(args.features, what="feature")
    check_rule_name(args.rule)
    check_network_options(args, [args.rule])
    if _pooling(args, args.rule) != args.pooling:
        raise ValueError(f"--pooling {args.pooling} applies to parametric rules with parameters, not {args.rule!r}")
    out = Path(args.out)
    with output_folder(out, overwrite=args.overwrite) as folder:
        data = _load(args, features)
        if args.heldout:
            check_session_folds(data, args.folds)
        model = _fit(data, args.rule, args, features, parallel=_parallel(args))  # --restarts in parallel
        heldout = None
        if args.heldout:
            try:
                _, table = run_compare(data, [args.rule], args, features, scheme="sessions")
            except FitsFailed as err:  # the first failed fold's error, of its own type, naming the fold
                raise err.failures[0].labelled() from err
            keep = ["n_animals", "nats_per_trial", "se", "bits_per_trial", "accuracy", "accuracy_se"]
            heldout = {"scheme": "sessions", "folds": args.folds, **table.iloc[0][keep].to_dict()}
        evidence = advice = None
        if not args.no_feature_check and any(f not in features for f in HISTORY_FEATURES):
            evidence = history_feature_evidence(data, features, seed=args.seed)
            advice = suggest_features(evidence, features)
        write_fit(model, data, folder, seed=args.seed, n_draws=args.draws, heldout=heldout,
                  history_features=evidence)
    emit(_fit_lines(model, data, out))
    if advice is not None:
        emit(f"advice: {advice}")
    if heldout is not None:
        emit(f"held-out sessions ({args.folds} folds): {heldout['nats_per_trial']:.4f} nats/trial, "
             f"accuracy {heldout['accuracy']:.3f}")
    return 0


def _weights_frame(cohort: SimulatedCohort) -> pd.DataFrame:
    """Tidy true weights and rule updates: subject, trial, feature, weight, update."""
    a, t, k = cohort.weights.shape
    return pd.DataFrame({
        "subject": np.repeat(np.asarray(cohort.subjects, dtype=object), t * k),
        "trial": np.tile(np.repeat(np.arange(t), k), a),
        "feature": np.tile(np.asarray(cohort.feature_names, dtype=object), a * t),
        "weight": cohort.weights.reshape(-1), "update": cohort.updates.reshape(-1)})


def _simulate(args: argparse.Namespace, features: Sequence[str], *, seed: int | None) -> SimulatedCohort:
    if args.rule not in RULES:
        raise ValueError(f"rule {args.rule!r} cannot simulate; use one of {', '.join(RULES)}")
    if args.animals < 1 or args.trials < 2:
        raise ValueError(f"--animals must be >= 1 and --trials >= 2, got {args.animals} and {args.trials}")
    return simulate_cohort(make_rule(args.rule), n_animals=args.animals, n_trials=args.trials, sigma=args.sigma,
                           features=features, task=IBLTask(reward_levels=args.reward_levels), seed=seed,
                           dtype=torch.float64, population_sd=getattr(args, "population_sd", 0.0))


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate a cohort and write its trial table, true weights and metadata."""
    features = parse_list(args.features, what="feature")
    cohort = _simulate(args, features, seed=args.seed)
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"--out must name a .csv file, got {str(out)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    table = cohort.to_ibl_table() if args.coding == "ibl" else cohort.table
    accuracy = float((cohort.table["choice"] == cohort.table["answer"]).mean())
    side = out.with_name(out.stem + ".weights.csv")
    meta = out.with_name(out.stem + ".json")
    facts = {"rule": args.rule, "params": cohort.params, "sigma": cohort.sigma, "seed": args.seed,
             "features": list(features), "n_animals": args.animals, "n_trials": args.trials,
             "coding": args.coding, "reward_levels": list(args.reward_levels), "accuracy": accuracy,
             "reward_rate": float(cohort.table["reward"].mean())}
    if cohort.animal_params is not None:  # each animal's own parameters, by subject
        facts.update(population_sd=args.population_sd, animal_params={
            s: {k: v[i] for k, v in cohort.animal_params.items()} for i, s in enumerate(cohort.subjects)})
    with output_files(meta, side, out) as (meta_tmp, side_tmp, out_tmp):  # all three, or none of them
        write_json(meta_tmp, facts)
        _weights_frame(cohort).to_csv(side_tmp, index=False)
        table.to_csv(out_tmp, index=False)
    emit(f"simulated {args.animals} animals x {args.trials} trials with {args.rule} "
         f"(accuracy {accuracy:.3f})\ntrials: {out}\ntrue weights: {side}\nmetadata: {meta}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Cross-validate several rules on a trial table and write the comparison."""
    from learnrules.plots import plot_comparison

    features = parse_list(args.features, what="feature")
    rules = tuple(check_rule_name(name) for name in parse_list(args.rules, what="rule"))
    check_network_options(args, rules)
    out = Path(args.out)
    with output_folder(out, overwrite=args.overwrite) as folder:
        data = _load(args, features)
        if args.scheme == "sessions":
            check_session_folds(data, args.folds)
        try:
            cv, table = run_compare(data, rules, args, features, scheme=args.scheme)
        except FitsFailed as err:  # keep what finished, and say which rules and folds failed
            err.completed.to_csv(folder / "crossval.csv", index=False)
            pd.DataFrame([vars(f) for f in err.failures]).to_csv(folder / "failures.csv", index=False)
            failed = err
        else:
            failed = None
            (folder / "figures").mkdir(parents=True, exist_ok=True)
            cv.to_csv(folder / "crossval.csv", index=False)
            table.to_csv(folder / "compare.csv", index=False)
            plot_comparison(table, path=folder / "figures" / "comparison.png")
            write_json(folder / "summary.json", {"scheme": args.scheme, "folds": args.folds, "seed": args.seed,
                                                 "features": list(features),
                                                 "comparison": table.to_dict(orient="records")})
    if failed is not None:
        sys.stderr.write(f"learnrules: error: {' '.join(str(failed).split())} (the finished fits' rows are in "
                         f"{out}/crossval.csv, the failures with their tracebacks in {out}/failures.csv)\n")
        return 1
    emit(_table(table[["rule", "rank", "nats_per_trial", "se", "bits_per_trial", "accuracy", "diff_vs_best",
                       "p_value"]]))
    emit(f"\nheld-out {args.scheme}, {args.folds} folds; outputs in {out}/")
    return 0


def _recovery_scores(cohort: SimulatedCohort, model: FittedModel, fresh: SimulatedCohort, args: argparse.Namespace
                     ) -> dict[str, Any]:
    """Trajectory correlation, parameter coverage, update error and held-out gap to the oracle."""
    res, names = model.result, cohort.feature_names
    corr = trajectory_correlation(cohort.weights, res.weights_mean)
    scores: dict[str, Any] = {"trajectory_correlation": dict(zip(names, corr.tolist(), strict=True))}
    rule = model.scoring_rule
    prm = {} if model.method == "rollout" else as_params(res.params, torch.float64)  # the visited states' dtype

    def update(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        context = rule.init_context(prm, (w.shape[0],), w.shape[1]).to(w.dtype)  # history rules: initial state
        with torch.no_grad():
            return rule.drift(prm, w, x, y, r, context)

    states = visited_states(cohort, seed=args.seed)
    scores["update_relative_rmse"] = update_rmse(cohort.rule, cohort.params, update, states).relative_rmse
    if cohort.rule.markov and set(names) <= STIMULUS_FEATURES:
        stimuli, sides = task_stimuli(cohort)
        scores["drift_relative_rmse"] = drift_rmse(cohort.rule, cohort.params, update, states, stimuli=stimuli,
                                                   sides=sides, feature_names=names).relative_rmse
    truth, known = [], cohort.true_values()
    for row in res.parameters.itertuples():
        if row.parameter in known:
            value = np.atleast_1d(known[row.parameter])
            true = float(value[names.index(row.feature)] if row.feature in names and value.size > 1 else value[0])
            truth.append({"parameter": row.parameter, "feature": row.feature, "true": true, "mean": row.mean,
                          "lower": row.lower, "upper": row.upper, "covered": bool(row.lower <= true <= row.upper)})
    scores["parameters"] = truth
    test = load_trials(fresh.table)
    oracle = gaussian_filter_loglik(CohortTensors.from_trials(test, names), cohort.rule, cohort.params,
                                    sigma=cohort.sigma, init_mean=0.0, init_sd=0.5)
    fitted = FitPredictor(model).score(test)
    scores["heldout_animals"] = {"model": score_summary(fitted), "oracle": score_summary(oracle),
                                 "gap_nats_per_trial": oracle.nats_per_trial - fitted.nats_per_trial}
    return scores


def cmd_recover(args: argparse.Namespace) -> int:
    """Simulate a cohort with a known rule, fit it, and score how well the truth is recovered."""
    features = parse_list(args.features, what="feature")
    fit_rule = args.fit_rule or args.rule
    check_rule_name(fit_rule)
    check_network_options(args, [fit_rule])
    out = Path(args.out)
    with output_folder(out, overwrite=args.overwrite) as folder:
        cohort = _simulate(args, features, seed=args.seed)
        fresh = _simulate(args, features, seed=None if args.seed is None else args.seed + 1)
        data = load_trials(cohort.table)
        model = _fit(data, fit_rule, args, features)
        scores = _recovery_scores(cohort, model, fresh, args)
        write_fit(model, data, folder, seed=args.seed, n_draws=args.draws, truth=(cohort.rule, cohort.params),
                  true_weights=cohort.weights)
        write_json(folder / "recovery.json", {"true_rule": args.rule, "fitted_rule": fit_rule, **scores})
    emit(_fit_lines(model, data, out))
    emit("\ntrajectory correlation: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                  scores["trajectory_correlation"].items()))
    if scores["parameters"]:
        emit(_table(pd.DataFrame(scores["parameters"])))
    emit(f"update relative RMSE {scores['update_relative_rmse']:.3f} (0 = exact, 1 = no better than no learning)")
    if "drift_relative_rmse" in scores:
        emit(f"drift field relative RMSE {scores['drift_relative_rmse']:.3f} (the update expected over the task's "
             "trials and choices, which choices identify best)")
    gap = scores["heldout_animals"]["gap_nats_per_trial"]
    emit(f"held-out animals: gap to the oracle {gap:.4f} nats/trial (recovery.json)")
    return 0
