"""Neural and hybrid rules fitted to convergence: held-out animals against the oracle and the parametric fit.

Parts (each replaces its rows of results/neural_converge.csv and re-renders results/neural_converge.md):

- ``parametric``: cohorts whose truth is a parametric rule (``--truth``: reinforce, reinforce-baseline,
  asymmetric), 12 training + 8 held-out animals x 10,000 trials, sigma 0.01. Fitted: the true rule's family,
  its hybrid ``<truth>+mlp`` and the plain ``mlp``, each by ``learnrules.workflow.fit_model`` as ``learnrules
  fit`` runs it. Scored on the held-out animals by the Gaussian filter (FitPredictor); the oracle is the true
  rule with its true parameters and noise. Reports converged, steps, seconds, held-out nats/trial, the gap to
  the oracle, and the paired difference to the parametric fit with its SE over the 8 held-out animals.
- ``repro``: the hybrid ``<truth>+mlp`` from 5 network initializations (seeds 0-4) on the same cohort: the
  spread of their held-out scores.
- ``history``: a cohort whose truth reads the reward history (an eligibility trace of choices gated by reward,
  ``HISTORY``), 12 training + ``--held-out`` (default 16) held-out animals x 3,000 trials (``--trials``),
  simulation seed ``--sim-seed``.
  Fitted: the Markov parametric rules REINFORCE+baseline and asymmetric, and the hybrids
  ``reinforce-baseline+mlp`` (from the REINFORCE+baseline fit) and ``reinforce-baseline+gru`` (grown from the
  MLP hybrid's fit, as ``fit_model`` stages it; its seconds count both network stages). ``--rules``: a subset,
  so that a seed's rules can run in separate processes; every held-out animal's score goes to
  results/neural_converge_history_scores.csv.
  Reports the oracle's lead over the best Markov parametric rule, the share of it each hybrid recovers, and GRU
  minus MLP with its SE paired over the held-out animals.

- ``speed``: noise-free REINFORCE animals (12 training + 4 held-out x 10,000 trials): ``mlp`` and
  ``reinforce+mlp`` fitted to convergence, then Liu et al.'s schedule (the deterministic rollout, Adam lr 3e-3,
  backprop truncated every 100 trials, one step per epoch, 1,000 epochs, a (32, 32) relu MLP as
  ``--method rollout`` builds it) in the same run. Every fit is scored on the held-out animals by the rollout
  (sigma 0, initial weights the training animals' mean), the protocol of the schedule. Reports the schedule's
  best held-out score over its 1,000 epochs (scored every 10) and its time (our parallel rollout solver,
  measured; the paper's sequential loop, projected from 10 timed epochs), and how much sooner each fit's path
  reaches that score: the same fit capped
  at 1, 2, 4, ... network steps (a deterministic fit's path), each timed as a fresh fit with its parametric
  stage; a hybrid's path begins at its parametric fit (step 0).

Usage: python bench/neural_converge.py PART [--truth NAME] [--sim-seed N] [--animals N] [--trials T]
       [--rules A,B] [--budget S]
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from learnrules.behavior.load import load_trials
from learnrules.behavior.trials import TrialData
from learnrules.inference.evaluation.evaluate import gaussian_filter_loglik
from learnrules.inference.rollout.rollout import predict_heldout
from learnrules.inference.rollout.rollout_fit import RolloutConfig, fit_rollout
from learnrules.inference.variational.fit import FitConfig
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import MLPRule
from learnrules.models.rule import as_params
from learnrules.network_fit import mlp_stage
from learnrules.other_rules import make_rule
from learnrules.rule_names import is_neural, stage_one
from learnrules.synthetic import simulate_cohort
from learnrules.workflow import FitPredictor, fit_model

from report import markdown, setup

RESULTS = Path(__file__).parent / "results"
CSV = RESULTS / "neural_converge.csv"
logger = logging.getLogger("neural_converge")
SIGMA = 0.01
HELD_OUT = 8
# Rewards credit the last ~10 choices (lambda 0.9), not only the current one: no Markov rule can follow it.
HISTORY = ("eligibility", {"alpha": 0.03, "lam": 0.9, "baseline": 0.7})


def cohort(truth: str, args: argparse.Namespace, params: dict | None = None, held_out: int = HELD_OUT
           ) -> tuple[TrialData, TrialData, np.ndarray]:
    """Training and held-out animals of a simulated cohort, and the oracle's per-animal held-out score."""
    sim = simulate_cohort(make_rule(truth), params=params, n_animals=args.animals + held_out, n_trials=args.trials,
                          sigma=SIGMA, seed=args.sim_seed)
    data = load_trials(sim.table)
    train = TrialData(data.animals[:args.animals])
    test = TrialData(data.animals[args.animals:])
    tensors = CohortTensors.from_trials(test, ("bias", "stimulus"), dtype=torch.float64)
    oracle = gaussian_filter_loglik(tensors, sim.rule, sim.params, sigma=SIGMA, init_mean=0.0, init_sd=0.5)
    return train, test, oracle.per_animal()["nats_per_trial"].to_numpy()


def score(model, test: TrialData) -> np.ndarray:  # noqa: ANN001
    """Per-animal held-out log-likelihood per trial."""
    return FitPredictor(model).score(test).per_animal()["nats_per_trial"].to_numpy()


def row(part: str, truth: str, name: str, seed: int, model, test_ll: np.ndarray, oracle: np.ndarray,  # noqa: ANN001
        reference: np.ndarray | None) -> dict:
    diff = None if reference is None else test_ll - reference
    return {"part": part, "truth": truth, "rule": name, "seed": seed, "converged": model.result.converged,
            "steps": model.result.n_steps, "seconds": round(model.result.elapsed_s, 1),
            "heldout_nats": float(test_ll.mean()), "gap_to_oracle": float(oracle.mean() - test_ll.mean()),
            "minus_parametric": None if diff is None else float(diff.mean()),
            "minus_parametric_se": None if diff is None else float(diff.std(ddof=1) / np.sqrt(len(diff)))}


def part_parametric(args: argparse.Namespace) -> list[dict]:
    train, test, oracle = cohort(args.truth, args)
    rows, reference = [], None
    for name in (args.truth, f"{args.truth}+mlp", "mlp"):
        model = fit_model(train, name, seed=0, progress=False)
        test_ll = score(model, test)
        reference = test_ll if reference is None else reference
        rows.append(row("parametric", args.truth, name, 0, model, test_ll, oracle,
                        None if name == args.truth else reference))
        logger.info("%s", rows[-1])
    return rows


def part_repro(args: argparse.Namespace) -> list[dict]:
    train, test, oracle = cohort(args.truth, args)
    base = score(fit_model(train, args.truth, seed=0, progress=False), test)
    rows = []
    for seed in range(5):
        model = fit_model(train, f"{args.truth}+mlp", seed=seed, progress=False)
        rows.append(row("repro", args.truth, f"{args.truth}+mlp", seed, model, score(model, test), oracle, base))
        logger.info("%s", rows[-1])
    return rows


HISTORY_RULES = ("reinforce-baseline", "asymmetric", "reinforce-baseline+mlp", "reinforce-baseline+gru")
SCORES = RESULTS / "neural_converge_history_scores.csv"  # per held-out animal: paired comparisons at render time


def part_history(args: argparse.Namespace) -> list[dict]:
    """Fit ``args.rules`` (default all of HISTORY_RULES) and store every held-out animal's score.

    Runs for different rules of one seed may go to separate processes: the shares of the oracle's lead and
    GRU minus MLP are computed by :func:`history_summary` from the stored per-animal scores.
    """
    truth, params = HISTORY
    train, test, oracle = cohort(truth, args, params, held_out=args.held_out)
    rows, scores, fits = [], {"oracle": oracle}, {}
    for name in args.rules or HISTORY_RULES:
        # a hybrid starts at its parametric fit, a GRU hybrid at the MLP hybrid's, when fitted here
        start = fits.get(mlp_stage(name) if name.endswith("+gru") else stage_one(name) if is_neural(name) else "")
        model = fit_model(train, name, seed=0, progress=False, budget_s=args.budget, start=start,
                          config=FitConfig(param_posterior="none"))
        fits[name] = model.result
        scores[name] = score(model, test)
        rows.append(row("history", truth, name, args.sim_seed, model, scores[name], oracle, None))
        if start is not None:  # the time of the whole staged fit, the stages it reused included
            rows[-1]["seconds"] = round(model.result.elapsed_s + start.elapsed_s, 1)
        logger.info("%s", rows[-1])
    save_scores(args.sim_seed, scores)
    return rows


def save_scores(seed: int, scores: dict[str, np.ndarray]) -> None:
    """Replace the stored per-animal held-out scores of these rules at this simulation seed."""
    with open(RESULTS / ".neural_converge.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = pd.read_csv(SCORES) if SCORES.exists() else pd.DataFrame(columns=["seed", "rule", "animal", "nats"])
        old = old[~((old["seed"] == seed) & old["rule"].isin(list(scores)))]
        new = pd.DataFrame([{"seed": seed, "rule": name, "animal": i, "nats": float(v)}
                            for name, values in scores.items() for i, v in enumerate(values)])
        pd.concat([old, new], ignore_index=True).to_csv(SCORES, index=False)


def history_summary() -> pd.DataFrame:
    """Per seed and rule: the share of the oracle's lead over the best Markov parametric rule it recovers, and
    the GRU hybrid minus the MLP hybrid with its SE (paired over the held-out animals)."""
    if not SCORES.exists():
        return pd.DataFrame()
    table = pd.read_csv(SCORES).pivot_table(index=["seed", "animal"], columns="rule", values="nats")
    out = []
    for seed, sub in table.groupby(level="seed"):
        markov = [n for n in ("reinforce-baseline", "asymmetric") if n in sub]
        if "oracle" not in sub or not markov:
            continue
        best = max(markov, key=lambda n: sub[n].mean())
        lead = sub["oracle"].mean() - sub[best].mean()
        for name in sub.columns.drop("oracle"):
            r = {"seed": seed, "rule": name, "heldout_nats": sub[name].mean(), "best_markov": best,
                 "oracle_minus_best_markov": lead, "recovered_share": (sub[name].mean() - sub[best].mean()) / lead}
            if name == "reinforce-baseline+gru" and "reinforce-baseline+mlp" in sub:
                diff = sub[name] - sub["reinforce-baseline+mlp"]
                r |= {"gru_minus_mlp": diff.mean(), "gru_minus_mlp_se": diff.std(ddof=1) / np.sqrt(len(diff)),
                      "n_heldout": len(diff)}
            out.append(r)
    return pd.DataFrame(out)


def part_speed(args: argparse.Namespace) -> list[dict]:
    """Liu et al.'s schedule, then each network fit to convergence, and the first point of its path that reaches
    the schedule's final score (the fit is deterministic, so the fit capped at k network steps is its path's
    k-th point; each is timed as a fresh fit, its parametric stage included)."""
    sim = simulate_cohort(make_rule("reinforce"), n_animals=args.animals + 4, n_trials=args.trials, sigma=0.0,
                          seed=args.sim_seed)
    data = load_trials(sim.table)
    train, test = TrialData(data.animals[:args.animals]), TrialData(data.animals[args.animals:])
    tensors = {k: CohortTensors.from_trials(v, ("bias", "stimulus"), dtype=torch.float64)
               for k, v in (("train", train), ("test", test))}
    oracle = predict_heldout(tensors["test"], sim.rule, as_params(sim.params, torch.float64),
                             init_weights=torch.zeros(2, dtype=torch.float64)).loglik_per_trial
    epoch_s, path = {}, {}
    for solver, epochs in (("parallel", 1000), ("sequential", 10)):
        cfg = RolloutConfig(epochs=epochs, lr=3e-3, tbptt=100, update="sequence", eval_every=10, log_every=50,
                            solver=solver)
        network = MLPRule(2, hidden=(32, 32), seed=0)
        fitted = fit_rollout(tensors["train"], network, config=cfg, validation=tensors["test"], seed=0,
                             progress=False)
        tick = time.perf_counter()  # one validation pass: its cost comes out of the epoch time
        predict_heldout(tensors["test"], fitted.rule, {}, init_weights=fitted.init_weights.mean(0))
        validation_s = (time.perf_counter() - tick) * len(fitted.val_loglik)
        epoch_s[solver] = (fitted.elapsed_s - validation_s) / fitted.n_steps
        path[solver] = np.asarray(fitted.val_loglik)
    # the schedule's score: its best held-out score over the 1,000 epochs (what early stopping on held-out
    # animals would keep; its last epoch can be far worse when the rollout diverges)
    target = float(np.nanmax(path["parallel"]))
    logger.info("schedule: best %.5f, final %.5f, oracle %.5f", target, path["parallel"][-1], oracle)

    def rollout_score(model) -> float:  # noqa: ANN001
        w0 = torch.as_tensor(model.result.weights_mean[:, 0].mean(0))
        return predict_heldout(tensors["test"], model.rule, as_params(model.result.params, torch.float64),
                               init_weights=w0).loglik_per_trial

    rows, config = [], FitConfig(param_posterior="none")
    for name in ("mlp", "reinforce+mlp"):
        first = fit_model(train, stage_one(name), seed=0, progress=False, config=config)
        model = fit_model(train, name, seed=0, progress=False, config=config, start=first.result)
        seconds = first.result.elapsed_s + model.result.elapsed_s
        rollout = rollout_score(model)
        reach = None  # (network steps, seconds) of the first point of the path at the schedule's score
        if name != "mlp" and rollout_score(first) >= target:  # a hybrid starts as its parametric fit
            reach = (0, first.result.elapsed_s)
        steps = 1
        while reach is None and steps < model.result.n_steps:
            capped = fit_model(train, name, seed=0, progress=False, config=config, start=first.result,
                               max_steps=steps)
            if rollout_score(capped) >= target:
                reach = (steps, first.result.elapsed_s + capped.result.elapsed_s)
            steps *= 2
        if rollout < target:  # the converged fit must hold the score, not only pass it on the way
            reach = None
        elif reach is None:
            reach = (model.result.n_steps, seconds)
        r = {"part": "speed", "truth": "reinforce (noise-free)", "rule": name, "seed": 0,
             "converged": model.result.converged, "steps": model.result.n_steps, "seconds": round(seconds, 1),
             "heldout_rollout": rollout, "heldout_nats": float(score(model, test).mean()),
             "gap_to_oracle": oracle - rollout, "schedule_best_score": target, "reaches_it": reach is not None,
             "reached_at_step": None if reach is None else reach[0],
             "reached_at_s": None if reach is None else round(reach[1], 1)}
        for solver in ("parallel", "sequential"):
            r[f"schedule_s_{solver}"] = round(1000 * epoch_s[solver], 1)
            r[f"sooner_than_{solver}"] = None if reach is None else round(1000 * epoch_s[solver] / reach[1], 1)
        rows.append(r)
        logger.info("%s", rows[-1])
    return rows


def render(frame: pd.DataFrame) -> str:
    lines = ["# Neural and hybrid rules fitted to convergence", "",
             f"Simulated cohorts, sigma {SIGMA}, training animals x trials as in each row's command; {HELD_OUT} "
             "held-out animals scored by the Gaussian filter. `gap_to_oracle`: the true rule with its true "
             "parameters minus the fit (nats/trial); `minus_parametric`: the fit minus the fitted parametric rule, "
             "mean and SE of the paired per-animal difference.", "",
             "Regenerate: `python bench/neural_converge.py parametric --truth NAME`, "
             "`python bench/neural_converge.py repro --truth NAME`, `python bench/neural_converge.py speed` and "
             "`python bench/neural_converge.py history --animals 12 --trials 3000 --held-out 32 --sim-seed S "
             "--budget 3000` (S = 1, 2, 3, one process each, one thread; the GRU hybrid grown from the MLP hybrid "
             "fitted before it; its seconds were measured on 2 cores shared with other benchmarks, load 4-12).", ""]
    for part, sub in frame.groupby("part", sort=False):
        if part == "speed":  # the fits and the schedule can agree to 5 digits: show their difference
            sub = sub.assign(rollout_minus_schedule=sub["heldout_rollout"] - sub["schedule_best_score"])
        lines += [f"## {part}", "", markdown(sub.drop(columns="part").dropna(axis=1, how="all"), digits=5), ""]
        if part == "history":
            summary = history_summary()
            if len(summary):
                lines += ["Per seed: the share of the oracle's lead over the best Markov parametric rule that each "
                          "fit recovers; GRU hybrid minus MLP hybrid, mean and SE paired over the held-out animals "
                          f"(from {SCORES.name}).", "", markdown(summary, digits=5), ""]
        if part == "repro":
            for truth, rep in sub.groupby("truth"):
                spread = rep["heldout_nats"].max() - rep["heldout_nats"].min()
                lines += [f"{truth}+mlp over {len(rep)} initializations: held-out spread {spread:.6f} nats/trial.",
                          ""]
    return "\n".join(lines)


def save(rows: list[dict], part: str, truth: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / ".neural_converge.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = pd.read_csv(CSV) if CSV.exists() else pd.DataFrame()
        if len(old):
            same = (old["part"] == part) & (old["truth"] == truth)
            if part == "history":  # one set of rows per simulation seed and rule
                same &= (old["seed"] == rows[0]["seed"]) & old["rule"].isin([r["rule"] for r in rows])
            old = old[~same]
        frame = pd.concat([old, pd.DataFrame(rows)], ignore_index=True)
        frame.to_csv(CSV, index=False)
        (RESULTS / "neural_converge.md").write_text(render(frame))
    print(pd.DataFrame(rows).to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("parametric", "repro", "history", "speed"))
    parser.add_argument("--truth", default="reinforce-baseline", choices=("reinforce", "reinforce-baseline",
                                                                            "asymmetric"))
    parser.add_argument("--animals", type=int, default=12)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--sim-seed", type=int, default=0)
    parser.add_argument("--held-out", type=int, default=16, help="history: held-out animals (default 16)")
    parser.add_argument("--rules", type=lambda text: tuple(text.split(",")), default=None,
                        help="history: comma-separated subset of the rules to fit")
    parser.add_argument("--budget", type=float, default=900.0, help="cap of each network fit, seconds")
    args = parser.parse_args()
    setup()
    parts = {"parametric": part_parametric, "repro": part_repro, "history": part_history, "speed": part_speed}
    rows = parts[args.part](args)
    save(rows, args.part, rows[0]["truth"])


if __name__ == "__main__":
    main()
