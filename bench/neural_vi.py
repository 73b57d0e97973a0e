"""Neural learning rules fitted by the structured variational fit: speed, GRU vs MLP, real rat, recovery.

Parts (run one at a time; each replaces its rows of results/neural_vi.csv and re-renders results/neural_vi.md):

- ``speed``: MLP-rule VI fit of 12 simulated noise-free REINFORCE animals x 10,000 trials (4 more held out)
  under a wall-time budget, then the deterministic truncated-BPTT rollout (Liu et al.'s method, one Adam step
  per epoch over all animals) in the same run; both scored on the held-out animals by the same rollout
  protocol (sigma = 0, initial weights = mean of the training animals'). Reports the rollout's time to reach
  the VI's held-out log-likelihood, or its projected time for 1,000 epochs from the measured epoch time.
- ``speed-curve``: the VI fit alone under 30, 60 and 120 s budgets. ``speed-filter``: a random walk (no rule)
  scored by the filter on the same held-out animals, the floor of the filter-scored comparison.
- ``gru``: GRU vs MLP rule (both by VI) on a reward-history-gated cohort and on a REINFORCE cohort: held-out-
  animal log-likelihood per trial (Gaussian assumed-density filter), paired difference over animals with SE;
  also a fitted REINFORCE+baseline (Markov), whose gap to the oracle bounds what reward history is worth.
  ``gru-blocks``: the same where correct choices are rewarded with probability 1 or 0.3 in blocks.
- ``gru-warm``: on the ``gru-blocks`` cohorts (``--cohort`` picks one, so two processes can share the
  machine), the MLP fitted for ``--budget`` s, then for ``--warm-budget`` s more two ways from its end
  point: as a GRU rule that starts as exactly that MLP (``GRURule.from_mlp``), and as the same MLP
  (the control: what the extra time is worth without history).
- ``rat``: psytrack's rat W053, held-out sessions (5-fold, masked): MLP, GRU, random walk, REINFORCE+baseline.
- ``recovery``: MLP by VI on noise-free and sigma = 0.01 REINFORCE and on the asymmetric rule: relative RMSE of
  the inferred update on the visited states, held-out-animal gap to the oracle.

Usage: python bench/neural_vi.py PART [--budget S] [--animals N] [--trials T] [--sim-seed N]
[--warm-budget S] [--cohort NAME]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from neural_recovery import update_recovery

from learnrules.inference.evaluation.evaluate import gaussian_filter_loglik
from learnrules.inference.result import FitResult
from learnrules.inference.rollout.rollout import predict_heldout
from learnrules.inference.rollout.rollout_fit import RolloutConfig, fit_rollout
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.dynamics import DynamicsConfig
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import GRURule, MLPRule
from learnrules.models.rule import LearningRule
from learnrules.other_rules import make_rule
from learnrules.synthetic import IBLTask, SimulatedCohort, simulate_cohort

from report import setup

RESULTS = Path(__file__).parent / "results"
CSV = RESULTS / "neural_vi.csv"
logger = logging.getLogger("neural_vi")


def vi_config(**kw: object) -> FitConfig:
    """The VI settings used for neural rules throughout (overridable)."""
    base = {"dynamics": DynamicsConfig(sigma=0.05, sigma_init=2.0), "optimizer": "adam", "lr": 0.05,
            "network_lr": 1e-2, "inner_max_iter": 2, "param_posterior": "none", "max_steps": 100_000,
            "log_every": 25, "window": 25}
    return FitConfig(**{**base, **kw})


def mlp(args: argparse.Namespace, n_features: int = 2) -> MLPRule:
    """The MLP rule of every part: hidden (16, 16), seed 0, the chosen activation."""
    return MLPRule(n_features, hidden=(16, 16), seed=0, activation=args.activation)


def init_prior(res: FitResult) -> tuple[np.ndarray, np.ndarray]:
    """Held-out animals' initial-weight prior: mean and spread of the training animals' first weights."""
    w0 = res.weights_mean[:, 0]
    return w0.mean(0), np.sqrt(w0.var(0) + (res.weights_sd[:, 0] ** 2).mean(0))


def adf_score(res: FitResult, rule, params: dict, test: CohortTensors):  # noqa: ANN001, ANN201
    """Held-out-animal one-step-ahead score by the Gaussian filter with the fit's noise and start prior."""
    mean, sd = init_prior(res)
    return gaussian_filter_loglik(test, rule, params, sigma=res.sigma, init_mean=mean, init_sd=sd)


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and SE over animals of the per-animal difference a - b (nats/trial)."""
    d = np.asarray(a) - np.asarray(b)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


def per_animal(score) -> np.ndarray:  # noqa: ANN001
    """Per-animal log-likelihood per trial of a PredictiveScore."""
    return score.per_animal()["nats_per_trial"].to_numpy()


def speed_cohort(args: argparse.Namespace) -> tuple[LearningRule, SimulatedCohort, CohortTensors, CohortTensors]:
    """The noise-free REINFORCE cohort of ``speed``: the true rule, the simulation, training and held-out animals."""
    truth = make_rule("reinforce")
    sim = simulate_cohort(truth, n_animals=args.animals + 4, n_trials=args.trials, sigma=0.0, seed=0)
    heldout = np.arange(args.animals, args.animals + 4)
    return truth, sim, sim.tensors(np.arange(args.animals)), sim.tensors(heldout)


def part_speed(args: argparse.Namespace) -> list[tuple[str, object]]:
    """VI vs rollout on 12 x 10,000 noise-free REINFORCE animals (4 held out), same network and run."""
    truth, sim, train, test = speed_cohort(args)
    res = fit(train, rule=mlp(args), seed=0,
              config=vi_config(batch_size=args.batch, time_budget_s=args.budget))
    vi_rule = res.neural_rule()
    mean_w0 = torch.as_tensor(res.weights_mean[:, 0].mean(0))
    vi_roll = predict_heldout(test, vi_rule, {}, init_weights=mean_w0).loglik_per_trial
    vi_adf = adf_score(res, vi_rule, {}, test).nats_per_trial
    params = {k: torch.as_tensor(v) for k, v in sim.params.items()}
    oracle = predict_heldout(test, truth, params, init_weights=torch.zeros(2)).loglik_per_trial
    logger.info("VI: %.1f s, %d steps, held-out rollout %.5f, ADF %.5f, oracle %.5f", res.elapsed_s, res.n_steps,
                vi_roll, vi_adf, oracle)
    cfg = RolloutConfig(epochs=1000, lr=args.rollout_lr, tbptt=100, update="sequence", batch_size=None,
                        eval_every=2, log_every=10, time_budget_s=args.rollout_budget,
                        solver="sequential")  # the paper's implementation (bench/parallel_rollout.py: the other)
    ro = fit_rollout(train, mlp(args), config=cfg, validation=test, seed=0, progress=False)
    tick = time.perf_counter()  # one validation pass, to take the monitoring cost out of the epoch time
    predict_heldout(test, ro.rule, {}, init_weights=ro.init_weights.mean(0))
    n_val = len(ro.val_loglik)
    epoch_s = (ro.elapsed_s - n_val * (time.perf_counter() - tick)) / ro.n_steps
    val = np.asarray(ro.val_loglik)
    hit = np.nonzero(val >= vi_roll)[0]
    reach = f"{(hit[0] + 1) * cfg.eval_every * epoch_s:.1f} (measured)" if len(hit) else \
        f"not reached in {ro.n_steps} epochs; >= {1000 * epoch_s:.0f} projected for 1000 epochs"
    ratio = ((hit[0] + 1) * cfg.eval_every * epoch_s if len(hit) else 1000 * epoch_s) / res.elapsed_s
    return [("cohort", f"{args.animals} train + 4 held-out animals x {args.trials} trials, noise-free REINFORCE "
                       f"alpha {sim.params['alpha'].tolist()}"),
            ("network", f"MLP (16, 16) {args.activation}, both methods, same initialization"),
            ("vi_config", f"Adam, batch {args.batch} animals/step, network lr 1e-2, 2 Gauss-Newton iterations/step, "
                          f"budget {args.budget:.0f} s"),
            ("vi_wall_s", round(res.elapsed_s, 1)), ("vi_steps", res.n_steps),
            ("vi_sigma", json.dumps(np.round(res.sigma, 5).tolist())),
            ("vi_heldout_rollout_ll", vi_roll), ("vi_heldout_adf_ll", vi_adf), ("oracle_heldout_rollout_ll", oracle),
            ("rollout_config", f"sequence update (one Adam step/epoch, all animals), lr {args.rollout_lr}, tbptt 100,"
                               f" budget {args.rollout_budget:.0f} s"),
            ("rollout_epochs_run", ro.n_steps), ("rollout_epoch_s_excl_validation", round(epoch_s, 2)),
            ("rollout_best_heldout_ll", float(val.max()) if len(val) else float("nan")),
            ("rollout_time_to_vi_ll_s", reach), ("rollout_1000_epochs_projected_s", round(1000 * epoch_s, 0)),
            ("speed_ratio_rollout_over_vi", round(ratio, 2))]


def part_speed_curve(args: argparse.Namespace) -> list[tuple[str, object]]:
    """VI's held-out log-likelihood after shorter budgets, on the cohort of ``speed`` (time-to-target of VI)."""
    _, _, train, test = speed_cohort(args)
    rows: list[tuple[str, object]] = []
    for budget in (30.0, 60.0, 120.0):
        res = fit(train, rule=mlp(args), seed=0,
                  config=vi_config(batch_size=args.batch, time_budget_s=budget, lr_decay=args.lr_decay,
                                   network_lr=args.network_lr))
        mean_w0 = torch.as_tensor(res.weights_mean[:, 0].mean(0))
        ll = predict_heldout(test, res.neural_rule(), {}, init_weights=mean_w0).loglik_per_trial
        adf = adf_score(res, res.neural_rule(), {}, test).nats_per_trial
        rows.append((f"vi_budget_{budget:.0f}s", f"{res.elapsed_s:.1f} s, {res.n_steps} steps, held-out rollout LL "
                                                 f"{ll:.5f}, ADF LL {adf:.5f}"))
    return rows


def part_speed_filter(args: argparse.Namespace) -> list[tuple[str, object]]:
    """What the filter's held-out score gives without a rule: a random walk on the cohort of ``speed``.

    The VI fit's own predictive (the Gaussian filter, which also tracks each held-out animal's weights) is the
    other way to score it against the rollout; this is the score of no rule at all under that protocol.
    """
    truth, sim, train, test = speed_cohort(args)
    walk = fit(train, seed=0, config=FitConfig(param_posterior="none"))
    oracle = gaussian_filter_loglik(test, truth, sim.params, sigma=1e-4, init_mean=0.0, init_sd=0.5)
    return [("random_walk_fit", f"{walk.elapsed_s:.1f} s, {walk.n_steps} steps, sigma "
                                f"{np.round(walk.sigma, 5).tolist()}"),
            ("random_walk_heldout_adf_ll", adf_score(walk, make_rule("zero"), {}, test).nats_per_trial),
            ("oracle_heldout_adf_ll_sigma_1e-4", oracle.nats_per_trial)]


def fit_vi(train: CohortTensors, rule, budget: float, batch: int | None = None) -> FitResult:  # noqa: ANN001
    """VI fit of a neural rule under a time budget."""
    return fit(train, rule=rule, seed=0, config=vi_config(time_budget_s=budget, batch_size=batch))


@dataclass(frozen=True)
class GRUCohort:
    """A simulated cohort of the GRU-vs-MLP comparison: true rule, its parameters, task and weight noise."""

    rule: str
    params: dict | None = None
    task: IBLTask = IBLTask()
    sigma: float = 0.01


# The reward-gated rule's rate is alpha0 + alpha1 * (reward average). Strong gating: rate 0.0005 .. 0.2, the
# reward averaged over ~20 trials.
STRONG_GATING = {"alpha0": 0.0005, "alpha1": 0.2, "beta": 0.5, "eta": 0.05}
GRU_COHORTS = {
    # rate 0.002 .. 0.082, reward average over ~5 trials
    "reward-gated": GRUCohort("reward-gated", {"alpha0": 0.002, "alpha1": 0.08, "beta": 0.5, "eta": 0.2}),
    # measured, markov_minus_oracle: history is worth 0.00026 nats/trial here, 0.00018 above
    "reward-gated-strong": GRUCohort("reward-gated", STRONG_GATING),
    "reinforce": GRUCohort("reinforce"),
}
# Correct choices paid with probability 1 or 0.3 in blocks, so the reward rate (and the gated rate) moves on
# its own; weight noise 0.001, so the filter forgives a wrong rule less (scratch: history worth 0.00081).
GRU_BLOCK_COHORTS = {
    "reward-blocks": GRUCohort("reward-gated", STRONG_GATING, IBLTask(reward_levels=(1.0, 0.3)), sigma=0.001),
    "reinforce-blocks": GRUCohort("reinforce", None, IBLTask(reward_levels=(1.0, 0.3)), sigma=0.001),
}


def part_gru(args: argparse.Namespace, cohorts: dict[str, GRUCohort] = GRU_COHORTS) -> list[tuple[str, object]]:
    """GRU vs MLP by VI on reward-gated cohorts and on a REINFORCE cohort (held-out animals, ADF)."""
    rows: list[tuple[str, object]] = []
    for name, cohort in cohorts.items():
        truth, sim, train, test = gru_cohort_data(args, cohort)
        scores = {}
        for label, rule in (("mlp", mlp(args)),
                            ("gru", GRURule(2, hidden=(16, 16), gru_hidden=8, seed=0, activation=args.activation))):
            res = fit_vi(train, rule, args.budget, batch=args.batch)
            scores[label] = per_animal(adf_score(res, res.neural_rule(), {}, test))
            rows += fit_rows(name, label, res, scores[label])
        rows += references(name, cohort, truth, sim, train, test, scores)
        rows += differences(name, scores, (("gru", "mlp"), ("gru", "markov"), ("markov", "oracle")), args.heldout)
    rows.append(("gru_cohorts", f"{args.animals} train + {args.heldout} held-out animals x {args.trials} trials "
                                f"(simulation seed {args.sim_seed}), {cohorts}, markov = REINFORCE+baseline fitted by "
                                f"VI, batch {args.batch} animals/step, budget {args.budget:.0f} s per neural fit"))
    return rows


def fit_rows(name: str, label: str, res: FitResult, score: np.ndarray) -> list[tuple[str, object]]:
    """Rows of one neural fit: its held-out log-likelihood per trial (mean over animals), steps, time, sigma."""
    return [(f"{name}_{label}_heldout_ll", float(score.mean())),
            (f"{name}_{label}_fit", f"{res.n_steps} steps, {res.elapsed_s:.0f} s, sigma "
                                    f"{np.round(res.sigma, 4).tolist()}")]


def gru_cohort_data(args: argparse.Namespace, cohort: GRUCohort
                    ) -> tuple[LearningRule, SimulatedCohort, CohortTensors, CohortTensors]:
    """Simulate a GRU-comparison cohort: the true rule, the simulation, training and held-out animals."""
    truth = make_rule(cohort.rule)
    sim = simulate_cohort(truth, n_animals=args.animals + args.heldout, n_trials=args.trials,
                          sigma=cohort.sigma, seed=args.sim_seed, params=cohort.params, task=cohort.task)
    return (truth, sim, sim.tensors(np.arange(args.animals)),
            sim.tensors(np.arange(args.animals, args.animals + args.heldout)))


def references(name: str, cohort: GRUCohort, truth: LearningRule, sim: SimulatedCohort, train: CohortTensors,
               test: CohortTensors, scores: dict) -> list[tuple[str, object]]:
    """Score the oracle and a fitted REINFORCE+baseline on the held-out animals (adds to ``scores``).

    The Markov rule has the true rule's form but no history: the oracle minus it bounds what history is worth.
    """
    oracle = gaussian_filter_loglik(test, truth, sim.params, sigma=cohort.sigma, init_mean=0.0, init_sd=0.5)
    scores["oracle"] = per_animal(oracle)
    markov = make_rule("reinforce-baseline")
    res = fit(train, rule=markov, seed=0, config=FitConfig(dynamics=DynamicsConfig(sigma=0.05),
                                                             param_posterior="none"))
    scores["markov"] = per_animal(adf_score(res, markov, res.params, test))
    return [(f"{name}_oracle_heldout_ll", oracle.nats_per_trial),
            (f"{name}_reinforce-baseline_heldout_ll", float(scores["markov"].mean()))]


def differences(name: str, scores: dict, pairs, n_heldout: int) -> list[tuple[str, object]]:  # noqa: ANN001
    """Rows of paired held-out differences ``a - b`` (mean +- SE over animals) for each ``(a, b)`` in ``pairs``."""
    rows = []
    for label, other in pairs:
        d, se = paired(scores[label], scores[other])
        rows.append((f"{name}_{label}_minus_{other}", f"{d:+.5f} +- {se:.5f} (SE over {n_heldout} held-out animals)"))
    return rows


def part_gru_warm(args: argparse.Namespace) -> list[tuple[str, object]]:
    """The MLP, then a GRU started as that MLP vs the MLP fitted on for as long (``GRU_BLOCK_COHORTS``)."""
    cohorts = {k: v for k, v in GRU_BLOCK_COHORTS.items() if args.cohort in (None, k)}
    rows: list[tuple[str, object]] = []
    for name, cohort in cohorts.items():
        truth, sim, train, test = gru_cohort_data(args, cohort)
        first = fit_vi(train, mlp(args), args.budget, batch=args.batch)
        fitted = first.neural_rule()
        # both continuations start from the first fit's noise level (one value for all weights)
        sigma = float(np.exp(np.log(first.sigma).mean()))
        config = vi_config(time_budget_s=args.warm_budget, batch_size=args.batch,
                           dynamics=DynamicsConfig(sigma=sigma, sigma_init=2.0))
        scores = {"mlp": per_animal(adf_score(first, fitted, {}, test))}
        fits = {"mlp": first}
        for label, rule in (("mlp_continued", fitted),
                            ("gru_from_mlp", GRURule.from_mlp(fitted, gru_hidden=8, seed=0))):
            fits[label] = fit(train, rule=rule, seed=0, config=config)
            scores[label] = per_animal(adf_score(fits[label], fits[label].neural_rule(), {}, test))
        for label, res in fits.items():
            rows += fit_rows(name, label, res, scores[label])
        rows += references(name, cohort, truth, sim, train, test, scores)
        rows += differences(name, scores, (("gru_from_mlp", "mlp"), ("gru_from_mlp", "mlp_continued"),
                                           ("mlp_continued", "mlp"), ("gru_from_mlp", "markov"),
                                           ("markov", "oracle")), args.heldout)
    rows.append(("gru_warm_cohorts", f"{args.animals} train + {args.heldout} held-out animals x {args.trials} trials "
                                     f"(simulation seed {args.sim_seed}), {sorted(cohorts)}, MLP {args.budget:.0f} s, "
                                     f"then {args.warm_budget:.0f} s per continuation, batch {args.batch}"))
    return rows


def part_gru_blocks(args: argparse.Namespace) -> list[tuple[str, object]]:
    """GRU vs MLP where the reward rate moves in blocks of its own (``GRU_BLOCK_COHORTS``)."""
    return part_gru(args, GRU_BLOCK_COHORTS)


def part_rat(args: argparse.Namespace) -> list[tuple[str, object]]:
    """Held-out sessions of rat W053: MLP, GRU, random walk, REINFORCE+baseline, all by VI and the ADF."""
    from learnrules.behavior import load_psytrack_rat
    from learnrules.inference.evaluation.crossval import session_folds

    data = load_psytrack_rat()
    features = ("bias", "s1", "s2")
    folds = session_folds(data, k=args.folds, seed=0)
    models: dict[str, Callable[[], object]] = {
        "random walk": lambda: None, "reinforce-baseline": lambda: make_rule("reinforce-baseline"),
        "mlp": lambda: mlp(args, n_features=3),
        "gru": lambda: GRURule(3, hidden=(16, 16), gru_hidden=8, seed=0, activation=args.activation)}
    totals = {m: [0.0, 0] for m in models}
    for fold in folds[:args.n_folds]:
        train = CohortTensors.from_trials(fold.train, features)
        test = CohortTensors.from_trials(fold.test, features)
        held = _fold_mask(fold.score_mask, test)
        for name, make in models.items():
            rule = make()
            neural = rule is not None and hasattr(rule, "network")
            cfg = vi_config(time_budget_s=args.budget) if neural else FitConfig(dynamics=DynamicsConfig(sigma=0.05))
            res = fit(train, rule=rule, config=cfg, seed=0)
            scored_rule = res.neural_rule() if neural else (rule or make_rule("zero"))
            score = gaussian_filter_loglik(test, scored_rule, res.params, sigma=res.sigma,
                                           init_mean=res.weights_mean[:, 0], init_sd=res.weights_sd[:, 0])
            score = score.restrict(held)
            totals[name][0] += score.total
            totals[name][1] += score.n_trials
            logger.info("fold %d: %s %.5f nats/trial (%.0f s fit)", fold.index, name, score.nats_per_trial,
                        res.elapsed_s)
    rows = [(f"rat_{m}_heldout_session_ll", t / max(n, 1)) for m, (t, n) in totals.items()]
    rows.append(("rat_setup", f"W053, features {features}, {args.n_folds} of {args.folds} session folds "
                              f"({totals['mlp'][1]} scored trials), filter: Gaussian ADF, neural budget "
                              f"{args.budget:.0f} s per fit"))
    return rows


def _fold_mask(masks, test: CohortTensors) -> np.ndarray:  # noqa: ANN001
    """Padded held-out mask of a fold (per-subject masks in row order)."""
    out = np.zeros(tuple(test.valid.shape), dtype=bool)
    for i, subject in enumerate(test.subjects):
        m = np.asarray(masks[subject], dtype=bool)
        out[i, :len(m)] = m
    return out


def part_recovery(args: argparse.Namespace) -> list[tuple[str, object]]:
    """Update recovery on visited states and held-out gap to the oracle, for three cohorts."""
    rows: list[tuple[str, object]] = []
    for name, sigma in (("reinforce", 0.0), ("reinforce", 0.01), ("asymmetric", 0.0)):
        truth = make_rule(name)
        sim = simulate_cohort(truth, n_animals=args.animals + 10, n_trials=args.trials, sigma=sigma, seed=2)
        idx = np.arange(args.animals)
        train, test = sim.tensors(idx), sim.tensors(np.arange(args.animals, args.animals + 10))
        res = fit_vi(train, mlp(args), args.budget, batch=args.batch)
        rule = res.neural_rule()
        pooled = update_recovery(sim, rule, train, idx)[-1]
        model = adf_score(res, rule, {}, test).nats_per_trial
        oracle_sd = max(sigma, 1e-4)
        oracle = gaussian_filter_loglik(test, truth, sim.params, sigma=oracle_sd, init_mean=0.0,
                                        init_sd=0.5).nats_per_trial
        key = f"{name}_sigma{sigma:g}"
        rows += [(f"{key}_update_rel_rmse", pooled["rel_rmse"]), (f"{key}_update_corr", pooled["corr"]),
                 (f"{key}_expected_update_rel_rmse", pooled["rel_rmse_expected"]),
                 (f"{key}_heldout_gap", model - oracle),
                 (f"{key}_fit", f"{res.n_steps} steps, {res.elapsed_s:.0f} s, sigma {np.round(res.sigma, 4).tolist()}")]
    rows.append(("recovery_cohorts", f"{args.animals} train + 10 held-out animals x {args.trials} trials "
                                     f"(smaller than 100 x 2000 for time), budget {args.budget:.0f} s per fit"))
    return rows


PARTS = {"speed": part_speed, "speed-curve": part_speed_curve, "speed-filter": part_speed_filter, "gru": part_gru,
         "gru-blocks": part_gru_blocks, "gru-warm": part_gru_warm,
         "rat": part_rat, "recovery": part_recovery}


def write(part: str, rows: list[tuple[str, object]]) -> None:
    """Replace this part's rows in the CSV and re-render the markdown."""
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / ".neural_vi.lock", "w") as lock:  # parts run side by side rewrite the same files
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write(part, rows)


def _write(part: str, rows: list[tuple[str, object]]) -> None:
    new = pd.DataFrame([(part, k, str(v)) for k, v in rows], columns=["part", "quantity", "value"])
    old = pd.read_csv(CSV, dtype=str) if CSV.exists() else new.iloc[:0]
    table = pd.concat([old[old["part"] != part], new], ignore_index=True)
    table.to_csv(CSV, index=False)
    lines = ["# neural_vi", "", "Neural rules fitted inside the structured variational fit. torch "
             f"{torch.__version__}, 1 thread, 2-core machine shared with other jobs (timings are upper bounds). Run: "
             "`python bench/neural_vi.py PART`.", ""]
    for name, group in table.groupby("part", sort=False):
        lines += [f"## {name}", "", "| quantity | value |", "|---|---|"]
        lines += [f"| {q} | {_fmt(v)} |" for q, v in zip(group["quantity"], group["value"], strict=True)]
        lines.append("")
    (RESULTS / "neural_vi.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _fmt(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.5f}" if abs(number) < 100 and not number.is_integer() else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--budget", type=float, default=240.0, help="wall-time budget of each VI fit, s")
    parser.add_argument("--rollout-budget", type=float, default=240.0)
    parser.add_argument("--rollout-lr", type=float, default=3e-3)
    parser.add_argument("--animals", type=int, default=12)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--heldout", type=int, default=6, help="held-out animals (gru)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--n-folds", type=int, default=1)
    parser.add_argument("--network-lr", type=float, default=1e-2, help="VI network step size (speed-curve)")
    parser.add_argument("--activation", default="relu", choices=("relu", "tanh", "silu"),
                        help="of the neural rules (results/neural_vi.md was measured with relu)")
    parser.add_argument("--lr-decay", type=float, default=1.0, help="Adam step-size decay per step (VI)")
    parser.add_argument("--sim-seed", type=int, default=1, help="seed of the gru parts' cohorts (networks: seed 0)")
    parser.add_argument("--warm-budget", type=float, default=400.0, help="each continuation of gru-warm, s")
    parser.add_argument("--cohort", choices=sorted(GRU_BLOCK_COHORTS), help="gru-warm: this cohort only")
    args = parser.parse_args()
    setup()
    start = time.perf_counter()
    rows = PARTS[args.part](args)
    rows.append(("part_wall_s", round(time.perf_counter() - start, 1)))
    rows += [("vi_lr_decay_per_step", args.lr_decay), ("vi_network_lr", args.network_lr)]
    tuned = args.lr_decay != 1.0 or args.network_lr != 1e-2
    name = f"{args.part} (network lr {args.network_lr}, decay {args.lr_decay})" if tuned else args.part
    name = name if args.activation == "relu" else f"{name} ({args.activation})"
    name = name if args.cohort is None else f"{name} {args.cohort}"
    write(name if args.sim_seed == 1 else f"{name} (simulation seed {args.sim_seed})", rows)


if __name__ == "__main__":
    main()
