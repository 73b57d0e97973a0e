"""The installed ``learnrules`` command end to end on a small simulated table.

``simulate`` writes a 3 animals x 300 trials table once per module; ``fit`` and ``compare`` run on it and
every output file is opened with the reader it is meant for (pandas, JSON, ArviZ, FitResult.load, PNG).
Those three run the console script in a subprocess; the other checks call ``learnrules.cli.main`` in-process
(each subprocess pays seconds of torch/pyro imports).
"""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import arviz as az
import numpy as np
import pandas as pd
import pytest
import torch

from learnrules import cli, workflow
from learnrules.behavior import load_trials
from learnrules.inference import FitResult
from learnrules.inference.evaluation.crossval import hold_out_trials
from learnrules.inference.evaluation.evaluate import gaussian_filter_loglik
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import load_neural_rule
from learnrules.other_rules import make_rule
from learnrules.workflow import RULE_NAMES

EXE = str(Path(sys.executable).with_name("learnrules"))
PNG = b"\x89PNG\r\n\x1a\n"


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([EXE, *args, "--quiet"], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "sim.csv"
    proc = run("simulate", "--rule", "reinforce-baseline", "--animals", "3", "--trials", "300", "--seed", "3",
               "--out", str(path))
    assert "3 animals x 300 trials" in proc.stdout
    return path


def test_simulate_writes_table_weights_and_metadata(table):
    data = load_trials(table)
    assert data.subjects == ("sim000", "sim001", "sim002")
    assert data.n_trials == 900 and data.choice_coding == "binary"
    weights = pd.read_csv(table.with_name("sim.weights.csv"))
    assert list(weights.columns) == ["subject", "trial", "feature", "weight", "update"]
    assert len(weights) == 3 * 300 * 2
    meta = json.loads(table.with_name("sim.json").read_text())
    assert meta["rule"] == "reinforce-baseline" and meta["seed"] == 3
    assert meta["params"]["beta"] == pytest.approx(0.5)
    # REINFORCE with baseline only changes the weights after choices: the true updates are not all zero.
    assert weights["update"].abs().max() > 0


def test_simulate_is_seeded(table, tmp_path):
    again, other = tmp_path / "again.csv", tmp_path / "other.csv"
    common = ["simulate", "--rule", "reinforce-baseline", "--animals", "3", "--trials", "300", "-q"]
    assert cli.main([*common, "--seed", "3", "--out", str(again)]) == 0
    assert cli.main([*common, "--seed", "4", "--out", str(other)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(table), pd.read_csv(again))
    assert not pd.read_csv(table)["choice"].equals(pd.read_csv(other)["choice"])


def test_simulate_with_reward_blocks_pays_correct_choices_at_the_block_rates(tmp_path):
    out = tmp_path / "blocks.csv"
    assert cli.main(["simulate", "--animals", "2", "--trials", "1000", "--reward-levels", "1,0.5", "--seed", "1",
                     "-q", "--out", str(out)]) == 0
    t = pd.read_csv(out)
    correct = t["choice"] == t["answer"]
    paid = t.loc[correct].groupby("rewardProbability")["reward"].mean()
    assert paid[1.0] == 1 and abs(paid[0.5] - 0.5) < 0.06 and (t.loc[~correct, "reward"] == 0).all()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["reward_levels"] == [1.0, 0.5] and meta["accuracy"] == pytest.approx(correct.mean())
    assert meta["reward_rate"] < meta["accuracy"]


def test_fit_writes_every_output_and_each_parses(table, tmp_path):
    out = tmp_path / "fit"
    proc = run("fit", str(table), "--rule", "reinforce-baseline", "--max-steps", "3", "--draws", "10",
               "--seed", "1", "--out", str(out))
    assert "reinforce-baseline" in proc.stdout and "alpha" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rule"] == "reinforce-baseline" and summary["n_trials"] == 900
    assert summary["posterior_draws"] == 10
    assert set(summary["params"]) == {"alpha", "beta"} and np.isfinite(summary["elbo"])
    for name in summary["files"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    weights = pd.read_csv(out / "weights.csv")
    assert len(weights) == 900 * 2 and set(weights["feature"]) == {"bias", "stimulus"}
    assert (weights["lower"] <= weights["mean"]).all() and (weights["mean"] <= weights["upper"]).all()
    params = pd.read_csv(out / "parameters.csv")
    assert {"alpha", "beta", "sigma"} <= set(params["parameter"])
    result = FitResult.load(out / "fit.npz")
    assert result.subjects == ("sim000", "sim001", "sim002") and result.n_steps == summary["n_steps"]
    idata = az.from_netcdf(out / "posterior.nc")
    assert {"posterior", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert idata.posterior.sizes["draw"] == 10
    for fig in ("weights", "elbo", "rule_map", "drift_field", "learning_curves", "psychometric"):
        assert (out / "figures" / f"{fig}.png").read_bytes()[:8] == PNG


def test_fit_neural_rule_saves_its_network(table, tmp_path):
    out = tmp_path / "mlp"
    argv = ["fit", str(table), "--rule", "mlp", "--method", "rollout", "--budget", "2", "--draws", "5", "-q"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    rule = load_neural_rule(out / "rule.pt")
    assert rule.config.kind == "mlp" and rule.n_features == 2
    assert rule.config.hidden == (32, 32) and rule.config.activation == "relu"  # the defaults
    summary = json.loads((out / "summary.json").read_text())
    note = summary["note"]  # whichever ends it first: the budget or 5 epochs without held-out improvement
    assert summary["method"] == "rollout" and ("time budget" in note or "early stop" in note)
    assert "held out for early stopping" in note
    assert summary["network"]["hidden"] == [32, 32]


def test_fit_hybrid_rule_writes_its_network_and_what_the_parametric_rule_misses(table, tmp_path):
    out = tmp_path / "hybrid"
    argv = ["fit", str(table), "--rule", "reinforce-baseline+gru", "--max-steps", "2", "--draws", "5", "-q"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    rule = load_neural_rule(out / "rule.pt")
    assert rule.name == "ReinforceBaseline+GRU" and rule.config.base == "reinforce-baseline"
    assert rule.config.max_update is not None and rule.config.hidden == (16, 16)  # the variational defaults
    summary = json.loads((out / "summary.json").read_text())
    # --max-steps caps each network stage: the MLP hybrid's, then the GRU's grown from it
    assert summary["method"] == "variational" and 2 < summary["n_steps"] <= 4 and not summary["converged"]
    assert "then grown into the GRU" in summary["note"]
    assert "started at the reinforce-baseline fit" in summary["note"] and "NOT converged" in summary["note"]
    assert set(summary["params"]) == {"alpha", "beta"}
    for fig in ("rule_map", "network_map", "drift_field", "learning_curves"):
        assert (out / "figures" / f"{fig}.png").read_bytes()[:8] == PNG
    idata = az.from_netcdf(out / "posterior.nc")
    assert {"alpha", "beta"} <= set(idata.posterior.data_vars)


def test_rollout_predictions_use_the_weight_noise_best_on_the_held_out_sessions(table, monkeypatch):
    calls, real = [], workflow.fit_rollout

    def short(cohort, network, *, config, holdout, seed, **kwargs):
        fitted = real(cohort, network, config=replace(config, epochs=6, warmup_epochs=3), holdout=holdout,
                      seed=seed, **kwargs)
        calls.append((cohort, holdout, fitted))
        return fitted

    monkeypatch.setattr(workflow, "fit_rollout", short)
    data = load_trials(table)
    model = workflow.fit_model(data, "mlp", method="rollout", seed=0, progress=False)
    (cohort, holdout, fitted), = calls
    by_sigma = workflow.choose_sigma(fitted, cohort, holdout)
    assert list(by_sigma) == list(workflow.SIGMA_GRID) and all(np.isfinite(list(by_sigma.values())))
    # at sigma = 0 the filter is the rollout: the early-stopping score of the returned state
    assert by_sigma[0.0] == pytest.approx(model.validation["heldout_ll"], abs=1e-9)
    sigma = model.validation["sigma"]
    assert model.validation["heldout_ll_sigma"] == by_sigma[sigma] == max(by_sigma.values())
    assert sigma > 0 and by_sigma[sigma] > by_sigma[0.0]  # the simulated weights are noisy (sigma 0.02)
    np.testing.assert_array_equal(model.result.sigma, sigma)
    # the predictions (cross-validation, `learnrules compare`) are the filter's at that sigma
    w0 = fitted.init_weights.numpy()
    expected = gaussian_filter_loglik(cohort, fitted.rule, {}, sigma=np.full(2, sigma), init_mean=w0,
                                      init_sd=np.full_like(w0, 1e-6)).loglik
    np.testing.assert_allclose(workflow.FitPredictor(model).score(data).loglik, expected, rtol=1e-10)
    assert f"predictions with sigma = {sigma:g}" in model.note


def test_the_sigma_choice_never_scores_trials_held_out_of_the_cohort(table):
    # an animal with few sessions is held out in blocks that can span a cross-validation fold's test trials
    data = load_trials(table)
    test = {s: np.arange(a.n_trials) % 3 == 0 for s, a in zip(data.subjects, data, strict=True)}
    cohort = CohortTensors.from_trials(hold_out_trials(data, test), ("bias", "stimulus"))
    holdout = torch.zeros_like(cohort.valid)
    holdout[:, 100:200] = True  # test trials among them
    rule = make_rule("reinforce-baseline")
    fitted = SimpleNamespace(rule=rule, params=rule.default_params(2), init_weights=torch.zeros(3, 2))
    by_sigma = workflow.choose_sigma(fitted, cohort, holdout, grid=(0.0, 0.02))
    for sigma, value in by_sigma.items():
        ll = gaussian_filter_loglik(cohort, rule, fitted.params, sigma=np.full(2, sigma), init_mean=np.zeros((3, 2)),
                                    init_sd=np.full((3, 2), 1e-6)).loglik
        assert value == pytest.approx(np.mean(ll[(holdout & cohort.fitted).numpy()]), rel=1e-12)
        assert value != pytest.approx(np.nanmean(ll[holdout.numpy()]), rel=1e-6)


def test_rollout_restarts_keep_the_initialization_best_on_the_held_out_sessions(table, monkeypatch):
    calls, real = [], workflow.fit_rollout

    def short(cohort, network, *, config, holdout, seed, **kwargs):  # a few epochs each: the choice is the point
        fitted = real(cohort, network, config=replace(config, epochs=4, warmup_epochs=2), holdout=holdout,
                      seed=seed, **kwargs)
        calls.append((seed, holdout, fitted))
        return fitted

    monkeypatch.setattr(workflow, "fit_rollout", short)
    model = workflow.fit_model(load_trials(table), "mlp", method="rollout", seed=5, restarts=3, progress=False)
    assert [seed for seed, _, _ in calls] == [5, 6, 7]
    assert all(torch.equal(holdout, calls[0][1]) for _, holdout, _ in calls)  # judged on the same sessions
    scores = {seed: max(fitted.val_loglik) for seed, _, fitted in calls}
    best = max(scores, key=scores.get)
    assert len(set(scores.values())) == 3 and model.validation["heldout_ll"] == scores[best]
    assert {k: model.validation[f"heldout_ll_seed_{k}"] for k in scores} == scores
    chosen = dict(calls[best - 5][2].rule.network.named_parameters())
    for name, tensor in model.rule.network.named_parameters():
        assert torch.equal(tensor, chosen[name])
    assert f"best of 3 initializations (seed {best})" in model.note
    with pytest.raises(ValueError, match="restarts"):
        workflow.fit_model(load_trials(table), "reinforce-baseline", restarts=2)


@pytest.mark.parametrize(("rule", "optimizer"), [("mlp", "lbfgs"), ("gru", "adam")])
def test_rollout_method_fits_each_network_its_way_with_held_out_sessions(table, rule, optimizer, monkeypatch):
    calls = []

    def record(cohort, network, *, config, holdout, **kwargs):
        calls.append((config, holdout))
        raise InterruptedError  # the wiring is all this test needs

    monkeypatch.setattr(workflow, "fit_rollout", record)
    with pytest.raises(InterruptedError):
        workflow.fit_model(load_trials(table), rule, method="rollout", budget_s=7.0, seed=0)
    (config, holdout), = calls
    assert config.optimizer == optimizer and config.patience == 5 and config.time_budget_s == 7.0
    assert holdout.shape == (3, 300) and 0.15 < float(holdout.float().mean()) < 0.25  # 20% of the sessions


def test_fit_neural_rule_takes_its_network_shape_from_the_options(table, tmp_path):
    out = tmp_path / "gru"
    argv = ["fit", str(table), "--rule", "gru", "--hidden", "8,4", "--activation", "tanh", "--method", "rollout",
            "--budget", "2", "--draws", "5", "-q"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    rule = load_neural_rule(out / "rule.pt")
    assert rule.config.kind == "gru" and rule.config.hidden == (8, 4) and rule.config.activation == "tanh"
    layers = [m for m in rule.network.update.mlp if hasattr(m, "out_features")]
    assert [m.out_features for m in layers] == [8, 4, 2]  # two hidden layers, one output per weight
    summary = json.loads((out / "summary.json").read_text())
    assert summary["network"]["activation"] == "tanh" and summary["network"]["hidden"] == [8, 4]


def test_compare_ranks_rules_and_writes_chart(table, tmp_path):
    out, small = tmp_path / "cmp", tmp_path / "small.csv"
    frame = pd.read_csv(table)
    frame[frame["trial"] < 150].to_csv(small, index=False)  # 3 animals x 150 trials: 6 fits stay quick
    proc = run("compare", str(small), "--rules", "zero,reinforce", "--folds", "3", "--max-steps", "2",
               "--out", str(out))
    assert "nats_per_trial" in proc.stdout
    cmp = pd.read_csv(out / "compare.csv")
    assert sorted(cmp["rule"]) == ["reinforce", "zero"] and list(cmp["rank"]) == [1, 2]
    assert (cmp["nats_per_trial"] < 0).all() and (cmp["nats_per_trial"] > -np.log(2) - 0.2).all()
    cv = pd.read_csv(out / "crossval.csv")
    assert len(cv) == 2 * 3  # 2 rules x 3 held-out animals (one per fold)
    assert json.loads((out / "summary.json").read_text())["folds"] == 3
    assert (out / "figures" / "comparison.png").read_bytes()[:8] == PNG


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    for word in ("fit", "simulate", "compare", "recover", "demo", "examples:"):
        assert word in out
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "--features" in out and "example:" in out and "reinforce-baseline" in out


def test_help_rule_list_matches_the_library():
    assert cli.RULE_NAMES == RULE_NAMES


@pytest.mark.slow
def test_recover_reports_scores(tmp_path):
    out = tmp_path / "rec"
    proc = run("recover", "--rule", "reinforce-baseline", "--animals", "4", "--trials", "1000", "--draws", "5",
               "--out", str(out), timeout=900)
    assert "trajectory correlation" in proc.stdout
    rec = json.loads((out / "recovery.json").read_text())
    assert min(rec["trajectory_correlation"].values()) > 0.5
    assert abs(rec["heldout_animals"]["gap_nats_per_trial"]) < 0.05
    # the drift field (what choices pin down) is recovered better than the per-trial update (measured: 0.045, 0.150)
    assert rec["drift_relative_rmse"] < min(0.15, rec["update_relative_rmse"])
    assert "drift field relative RMSE" in proc.stdout


@pytest.mark.slow
def test_fit_heldout_sessions_scores_into_summary(tmp_path):
    table = tmp_path / "s.csv"
    assert cli.main(["simulate", "--rule", "reinforce", "--animals", "2", "--trials", "1100", "--seed", "2", "-q",
                     "--out", str(table)]) == 0
    out = tmp_path / "fit"
    assert cli.main(["fit", str(table), "--rule", "reinforce", "--heldout", "--folds", "2", "--max-steps", "5",
                     "--draws", "5", "-q", "--out", str(out)]) == 0
    heldout = json.loads((out / "summary.json").read_text())["heldout"]
    assert heldout["scheme"] == "sessions" and heldout["folds"] == 2
    assert -np.log(2) < heldout["nats_per_trial"] < 0 and 0.5 < heldout["accuracy"] <= 1


@pytest.mark.slow
def test_demo_leaves_figures_and_posterior(tmp_path):
    out = tmp_path / "demo"
    proc = run("demo", "--out", str(out), "--draws", "5", timeout=1200)
    assert "best held-out rule" in proc.stdout
    assert "step undone" not in proc.stderr
    assert az.from_netcdf(out / "posterior.nc").posterior.sizes["draw"] == 5
    assert (out / "figures" / "comparison.png").read_bytes()[:8] == PNG
    rules = ("zero", "reinforce-baseline", "reinforce-baseline+mlp")
    for rule in rules:
        assert (out / rule / "figures" / "rule_map.png").read_bytes()[:8] == PNG
    assert (out / "reinforce-baseline+mlp" / "figures" / "network_map.png").read_bytes()[:8] == PNG
    summary = json.loads((out / "summary.json").read_text())
    assert summary["truth"]["rule"] == "ReinforceBaseline"
    assert {row["rule"] for row in summary["comparison"]} == set(rules)
    fits = {row["rule"]: row for row in summary["fits"]}
    assert fits["reinforce-baseline+mlp"]["converged"]
    scores = {row["rule"]: row["nats_per_trial"] for row in summary["comparison"]}
    assert scores["reinforce-baseline+mlp"] >= scores["reinforce-baseline"] - 0.0005


def test_weights_csv_merges_back_onto_the_input_table_by_its_own_keys(tmp_path):
    # IBL-style keys: sessions named by dates (listed out of order), trial numbers restarting in each session,
    # a no-go trial dropped on reading; every weights row must find its own trial of the table.
    rng = np.random.default_rng(0)
    rows = []
    for subject in ("m1", "m2"):
        for date in ("2020-01-03", "2020-01-01", "2020-01-02"):
            for trial in range(1, 41):
                right = rng.random() < 0.5
                choice = -1 if right else 1  # IBL: -1 = right
                if rng.random() < 0.3:
                    choice = -choice
                if subject == "m1" and date == "2020-01-01" and trial == 7:
                    choice = 0
                contrast = rng.choice([0.25, 1.0])
                rows.append({"subject": subject, "session": date, "trial": trial,
                             "contrastLeft": 0.0 if right else contrast, "contrastRight": contrast if right else 0.0,
                             "choice": choice, "feedbackType": 1 if choice == (-1 if right else 1) else -1})
    table = pd.DataFrame(rows)
    path = tmp_path / "trials.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "fit"
    assert cli.main(["fit", str(path), "--max-steps", "2", "--draws", "10", "--out", str(out), "--quiet"]) == 0
    weights = pd.read_csv(out / "weights.csv")
    merged = weights.merge(pd.read_csv(path), on=["subject", "session", "trial"], how="left", validate="many_to_one")
    assert len(merged) == len(weights) == (len(table) - 1) * 2
    assert merged["choice"].notna().all() and (merged["choice"] != 0).all()
    first = weights[(weights["subject"] == "m1") & (weights["trial_index"] == 0)]
    assert set(first["session"]) == {"2020-01-01"} and set(first["trial"]) == {1}  # sessions in date order
