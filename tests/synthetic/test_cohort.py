"""Simulated cohorts: they learn, reproduce from seeds, and agree with the loader and the rule's likelihood."""

import numpy as np
import pandas as pd
import pytest
import torch

from learnrules.behavior import design_matrix, load_trials
from learnrules.models.inputs import CohortTensors
from learnrules.other_rules import RULES, EligibilityTrace, ReinforceBaseline, ZeroRule, make_rule
from learnrules.synthetic import IBLTask, simulate_cohort


def accuracy(cohort):
    n = len(cohort.subjects)
    return cohort.table["reward"].to_numpy().reshape(n, -1)


def test_reinforce_baseline_cohort_learns():
    cohort = simulate_cohort(ReinforceBaseline(), n_animals=20, n_trials=5000, seed=11)
    acc = accuracy(cohort)
    early, late = acc[:, :200].mean(), acc[:, 4000:].mean()
    assert 0.45 < early < 0.65
    assert late > 0.80
    # the stimulus weight grows on average, the bias does not
    assert cohort.weights[:, -1, 1].mean() > 3.0 > abs(cohort.weights[:, -1, 0].mean())


def test_zero_rule_cohort_does_not_learn():
    acc = accuracy(simulate_cohort(ZeroRule(), n_animals=20, n_trials=2000, seed=11))
    assert abs(acc[:, 1000:].mean() - 0.5) < 0.05


@pytest.mark.parametrize("name", list(RULES))
def test_every_rule_simulates(name):
    cohort = simulate_cohort(make_rule(name), n_animals=4, n_trials=300, sigma=0.01, seed=2)
    assert cohort.weights.shape == cohort.updates.shape == cohort.features.shape == (4, 300, 2)
    assert cohort.choice_prob.shape == (4, 300)
    assert np.isfinite(cohort.weights).all()
    assert len(cohort.table) == 1200


def test_seeds_reproduce_and_differ():
    kw = dict(n_animals=3, n_trials=400, sigma=0.05, seed=7)
    a, b = simulate_cohort(ReinforceBaseline(), **kw), simulate_cohort(ReinforceBaseline(), **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    np.testing.assert_array_equal(a.weights, b.weights)
    c = simulate_cohort(ReinforceBaseline(), **{**kw, "seed": 8})
    assert not np.array_equal(a.table["choice"], c.table["choice"])
    assert not np.array_equal(a.weights, c.weights)


@pytest.mark.parametrize("rule", [ReinforceBaseline(), EligibilityTrace()])
def test_without_noise_weights_follow_the_rule(rule):
    cohort = simulate_cohort(rule, n_animals=3, n_trials=500, sigma=0.0, seed=3)
    np.testing.assert_allclose(np.diff(cohort.weights, axis=1), cohort.updates[:, :-1], atol=1e-12)
    # the likelihood's path (contexts from data, then drift) reproduces the simulator's updates
    params = {k: torch.as_tensor(v) for k, v in cohort.params.items()}
    x = torch.as_tensor(cohort.features)
    y = torch.as_tensor(np.array(cohort.table["choice"], dtype=float).reshape(3, -1), dtype=torch.float64)
    r = torch.as_tensor(np.array(cohort.table["reward"], dtype=float).reshape(3, -1), dtype=torch.float64)
    drift = rule.drift(params, torch.as_tensor(cohort.weights), x, y, r, rule.contexts(params, x, y, r))
    np.testing.assert_allclose(drift.numpy(), cohort.updates, atol=1e-12)
    np.testing.assert_allclose(cohort.choice_prob, 1 / (1 + np.exp(-(cohort.weights * cohort.features).sum(-1))))


def test_noise_scales_and_session_noise():
    task = IBLTask(session_length=100)
    cohort = simulate_cohort(ZeroRule(), n_animals=50, n_trials=400, sigma=[0.1, 0.0], sigma_session=[0.0, 1.0],
                             task=task, seed=4)
    steps = np.diff(cohort.weights, axis=1)           # transition t -> t+1
    opens = (cohort.table["trial"].to_numpy().reshape(50, -1)[:, 1:] == 0)
    assert np.allclose(steps[..., 0][opens], 0.0) and np.allclose(steps[..., 1][~opens], 0.0)
    assert abs(steps[..., 0][~opens].std() - 0.1) < 0.01
    assert abs(steps[..., 1][opens].std() - 1.0) < 0.15


def test_table_schema_and_ibl_coding():
    cohort = simulate_cohort(ReinforceBaseline(), n_animals=2, n_trials=300, seed=5)
    t = cohort.table
    assert list(t.columns) == ["subject", "session", "trial", "contrastLeft", "contrastRight", "probabilityLeft",
                               "answer", "choice", "reward", "rewardProbability"]
    assert set(t["choice"]) <= {0, 1} and set(t["reward"]) <= {0, 1}
    np.testing.assert_array_equal(t["reward"], (t["choice"] == t["answer"]).astype(int))
    ibl = cohort.to_ibl_table()
    np.testing.assert_array_equal(ibl["choice"], np.where(t["choice"] == 1, -1, 1))
    np.testing.assert_array_equal(ibl["feedbackType"], np.where(t["reward"] == 1, 1, -1))
    right = t["answer"] == 1
    assert ibl.loc[right, "contrastLeft"].isna().all() and ibl.loc[~right, "contrastRight"].isna().all()
    # a rewarded IBL trial's choice (-1 = right) points at the side with the (non-NaN) contrast
    rewarded = ibl["feedbackType"] == 1
    assert ((ibl.loc[rewarded, "choice"] == -1) == ibl.loc[rewarded, "contrastRight"].notna()).all()


def test_load_trials_reads_both_codings_identically():
    cohort = simulate_cohort(ReinforceBaseline(), n_animals=3, n_trials=600, task=IBLTask(biased_blocks=True),
                             features=("bias", "stimulus", "prev_choice", "prev_reward"), seed=6)
    canonical, ibl = load_trials(cohort.table), load_trials(cohort.to_ibl_table())
    assert canonical.subjects == ibl.subjects == cohort.subjects
    for a, b, sim_choice in zip(canonical, ibl, cohort.table.groupby("subject")["choice"], strict=True):
        np.testing.assert_array_equal(a.choice, b.choice)
        np.testing.assert_array_equal(a.choice, sim_choice[1].to_numpy())
        np.testing.assert_array_equal(a.reward, b.reward)
        np.testing.assert_array_equal(a.answer, b.answer)
    # the design matrix built from the loaded table is the one the agents saw (incl. history features)
    dm = design_matrix(ibl, cohort.feature_names)
    np.testing.assert_allclose(np.stack(dm.blocks), cohort.features, atol=1e-12)


def test_bad_inputs_raise_clear_errors():
    rule = ReinforceBaseline()
    with pytest.raises(ValueError, match="no parameter"):
        simulate_cohort(rule, n_animals=1, n_trials=10, params={"gamma": 1.0})
    with pytest.raises(ValueError, match="violates"):
        simulate_cohort(rule, n_animals=1, n_trials=10, params={"alpha": -0.1})
    with pytest.raises(ValueError, match="shape"):
        simulate_cohort(rule, n_animals=1, n_trials=10, params={"alpha": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="cannot be simulated"):
        simulate_cohort(rule, n_animals=1, n_trials=10, features=("bias", "pupil"))
    with pytest.raises(ValueError, match="sigma"):
        simulate_cohort(rule, n_animals=1, n_trials=10, sigma=-1.0)
    params = {"alpha": np.array([0.1, 0.2])}
    cohort = simulate_cohort(rule, n_animals=1, n_trials=10, params=params)
    assert params["alpha"].tolist() == [0.1, 0.2]
    assert cohort.params["alpha"].tolist() == [0.1, 0.2] and cohort.params["beta"] == 0.5


def test_true_values_name_the_ground_truth_as_a_fit_reports_it():
    rule = make_rule("asymmetric")
    params = {k: v.numpy() for k, v in rule.from_rates(torch.tensor([0.06, 0.1]), torch.tensor([0.02, 0.04])).items()}
    cohort = simulate_cohort(rule, n_animals=2, n_trials=50, sigma=[0.01, 0.02], seed=0, params=params)
    truth = cohort.true_values()
    np.testing.assert_allclose(truth["alpha_plus"], [0.06, 0.1])
    np.testing.assert_allclose(truth["alpha_minus"], [0.02, 0.04])
    np.testing.assert_allclose(truth["alpha"], [0.08, 0.14])
    np.testing.assert_allclose(truth["sigma"], [0.01, 0.02])


def test_correct_choices_are_rewarded_at_the_block_probability_and_errors_never():
    task = IBLTask(session_length=1000, reward_levels=(1.0, 0.4))
    cohort = simulate_cohort(ReinforceBaseline(), n_animals=4, n_trials=4000, task=task, seed=2)
    t = cohort.table
    correct = t["choice"] == t["answer"]
    assert (t.loc[~correct, "reward"] == 0).all()
    for level in (1.0, 0.4):
        paid = t.loc[correct & (t["rewardProbability"] == level), "reward"]
        assert abs(paid.mean() - level) < 4 * np.sqrt(level * (1 - level) / len(paid)) + 1e-12
    plain = simulate_cohort(ReinforceBaseline(), n_animals=4, n_trials=4000, seed=2)
    np.testing.assert_array_equal(plain.table["reward"], plain.table["choice"] == plain.table["answer"])


def test_tensors_equal_the_loaded_table_of_the_same_animals():
    sim = simulate_cohort(ReinforceBaseline(), n_animals=4, n_trials=1200, sigma=0.01, seed=2)  # 3 sessions each
    direct = sim.tensors([2, 0])
    loaded = CohortTensors.from_trials(load_trials(sim.table)).select([2, 0])
    for name in ("features", "choice", "reward", "observed", "valid", "session_start", "lengths"):
        assert torch.equal(getattr(direct, name), getattr(loaded, name)), name
    assert direct.subjects == loaded.subjects == ("sim002", "sim000")
    assert direct.session_start.sum(1).tolist() == [3, 3]
