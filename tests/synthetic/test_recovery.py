"""Recovery scores: correlations, update RMSE on grids and visited states, log-likelihood gaps."""

import numpy as np
import pytest
import torch

from learnrules.other_rules import EligibilityTrace, Reinforce, ReinforceBaseline
from learnrules.synthetic import (
    drift_rmse,
    loglik_gap,
    simulate_cohort,
    task_stimuli,
    trajectory_correlation,
    update_grid,
    update_rmse,
    visited_states,
)


def test_trajectory_correlation():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(3, 100, 2))
    np.testing.assert_allclose(trajectory_correlation(true, true), [1.0, 1.0])
    np.testing.assert_allclose(trajectory_correlation(true, -2 * true + 1), [-1.0, -1.0])
    noisy = true + rng.normal(size=true.shape)
    corr = trajectory_correlation(true, noisy)
    assert np.all((corr > 0.6) & (corr < 0.8))   # 1 / sqrt(2) in expectation
    with pytest.raises(ValueError, match="shapes differ"):
        trajectory_correlation(true, true[:, :50])


def test_update_grid_layout():
    grid = update_grid(("bias", "stimulus"), weight_values=(-1.0, 0.0, 1.0))
    assert len(grid) == 3 ** 2 * 11 * 4        # weights^K x signed contrasts x choice x reward
    assert torch.all(grid.features[:, 0] == 1)
    assert sorted(set(grid.features[:, 1].tolist()))[-1] == pytest.approx(1.0)
    assert set(grid.choice.tolist()) == {0.0, 1.0} == set(grid.reward.tolist())
    with pytest.raises(ValueError, match="update_grid supports"):
        update_grid(("bias", "prev_choice"))


def test_update_rmse_on_grid():
    rule = ReinforceBaseline()
    params = {"alpha": [0.05, 0.1], "beta": 0.4}
    tensors = {"alpha": torch.tensor([0.05, 0.1]), "beta": torch.tensor(0.4)}

    def exact(w, x, y, r):
        return rule.drift(tensors, w, x, y, r, torch.zeros(len(w), 0))

    perfect = update_rmse(rule, params, exact)
    assert perfect.rmse == 0.0 and perfect.relative_rmse == 0.0
    zero = update_rmse(rule, params, lambda w, x, y, r: torch.zeros_like(w))
    assert zero.relative_rmse == pytest.approx(1.0)
    half = update_rmse(rule, params, lambda w, x, y, r: 0.5 * exact(w, x, y, r))
    assert half.relative_rmse == pytest.approx(0.5)
    other = update_rmse(rule, params, lambda w, x, y, r: Reinforce().drift(
        {"alpha": tensors["alpha"]}, w, x, y, r, torch.zeros(len(w), 0)))
    assert 0.1 < other.relative_rmse < 2.0 and other.rmse_per_feature.shape == (2,)
    with pytest.raises(ValueError, match="shape"):
        update_rmse(rule, params, lambda w, x, y, r: torch.zeros(len(w)))


def test_update_rmse_on_visited_states_of_a_non_markov_rule():
    rule = EligibilityTrace()
    cohort = simulate_cohort(rule, n_animals=2, n_trials=300, seed=0)
    states = visited_states(cohort, max_states=250, seed=1)
    assert len(states) == 250 and states.context.shape == (250, 2)
    # the cohort's own updates at those states are the truth
    flat = torch.as_tensor(cohort.updates.reshape(-1, 2))
    rows = {tuple(v) for v in states.weights.tolist()}
    assert len(rows) > 200
    params = {k: torch.as_tensor(v) for k, v in cohort.params.items()}
    truth = rule.drift(params, states.weights, states.features, states.choice, states.reward, states.context)
    assert any(torch.allclose(truth[0], f) for f in flat)
    # an update that ignores the trace (uses only the current trial) is wrong on visited states
    markov = update_rmse(rule, cohort.params, lambda w, x, y, r: rule.drift(
        params, w, x, y, r, (2 * y - 1).unsqueeze(-1) * x), states)
    assert markov.relative_rmse > 0.2


def test_drift_rmse_sees_through_a_reward_baseline_that_update_rmse_counts():
    # REINFORCE with a reward baseline moves its update between rewarded and unrewarded trials; averaged over
    # the choice the baseline term vanishes, so its drift field is REINFORCE's exactly.
    cohort = simulate_cohort(Reinforce(), n_animals=3, n_trials=500, params={"alpha": [0.1, 0.1]}, seed=4)
    states = visited_states(cohort, max_states=800, seed=0)
    stimuli, sides = task_stimuli(cohort)
    np.testing.assert_allclose(stimuli, cohort.features[..., 1].ravel())  # the stimulus feature itself
    assert ((sides == 1) == (stimuli > 0))[stimuli != 0].all()
    alpha = torch.tensor([0.1, 0.1])

    def baseline(w, x, y, r):
        return ReinforceBaseline().drift({"alpha": alpha, "beta": torch.tensor(0.5)}, w, x, y, r,
                                         torch.zeros(len(w), 0))

    kw = dict(stimuli=stimuli, sides=sides, feature_names=cohort.feature_names)
    assert update_rmse(Reinforce(), cohort.params, baseline, states).relative_rmse > 0.5
    field = drift_rmse(Reinforce(), cohort.params, baseline, states, **kw)
    assert field.relative_rmse < 1e-12 and field.n_states == 800
    # and it is a relative error like update_rmse's: half the update, half the field
    half = drift_rmse(Reinforce(), cohort.params, lambda w, x, y, r: 0.5 * Reinforce().drift(
        {"alpha": alpha}, w, x, y, r, torch.zeros(len(w), 0)), states, **kw)
    assert half.relative_rmse == pytest.approx(0.5)
    with pytest.raises(ValueError, match="history"):
        drift_rmse(EligibilityTrace(), {}, baseline, states, **kw)
    with pytest.raises(ValueError, match="feature names"):
        drift_rmse(Reinforce(), cohort.params, baseline, states, stimuli=stimuli, feature_names=["bias"])


def test_loglik_gap():
    oracle = np.log(np.array([0.9, 0.8, 0.7, np.nan]))
    model = np.log(np.array([0.8, 0.8, 0.6, 0.5]))
    expected = np.mean([np.log(0.9 / 0.8), 0.0, np.log(0.7 / 0.6)])
    assert loglik_gap(oracle, model) == pytest.approx(expected)
    with pytest.raises(ValueError, match="shape"):
        loglik_gap(oracle, model[:2])
