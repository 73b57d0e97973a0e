"""The drift field: the expected update over the task's trials and the policy's choice."""

import numpy as np
import pytest
import torch

from learnrules.models.neural import MLPRule
from learnrules.models.neural_grid import expected_update, rule_drift_grid, rule_update_grid, trial_mix
from learnrules.other_rules import Reinforce, ReinforceBaseline

NAMES = ["bias", "stimulus"]


def test_trial_mix_weights_stimuli_by_frequency_and_splits_zero_between_sides():
    x, side, prob = trial_mix([0.0, 0.0, 0.5, -0.5, 0.5, 0.5], NAMES)
    np.testing.assert_allclose(x.numpy(), [[1, -0.5], [1, 0], [1, 0], [1, 0.5]])
    np.testing.assert_allclose(side.numpy(), [0, 0, 1, 1])
    np.testing.assert_allclose(prob.numpy(), [1 / 6, 1 / 6, 1 / 6, 3 / 6])
    for bad in ([], [0.5, np.nan]):
        with pytest.raises(ValueError, match="stimuli"):
            trial_mix(bad, NAMES)


def test_trial_mix_takes_the_correct_sides_of_the_data_when_given():
    # E.g. a task whose 0.5 stimulus is sometimes rewarded on the left: the empirical joint, not the sign.
    x, side, prob = trial_mix([0.5, 0.5, 0.0, 0.5], NAMES, sides=[1, 0, 1, 1])
    np.testing.assert_allclose(x.numpy()[:, 1], [0, 0.5, 0.5])
    np.testing.assert_allclose(side.numpy(), [1, 0, 1])
    np.testing.assert_allclose(prob.numpy(), [1 / 4, 1 / 4, 2 / 4])
    for bad in ([1, 0], [1, 0, 2, 1]):
        with pytest.raises(ValueError, match="sides"):
            trial_mix([0.5, 0.5, 0.0, 0.5], NAMES, sides=bad)


def test_expected_reinforce_update_by_hand():
    # REINFORCE: dw = alpha r (y - p) x. Only the correct choice is rewarded, so for a trial whose correct
    # side is s the expectation is alpha p (1 - p) x (2 s - 1).
    alpha = torch.tensor([0.1, 0.3])
    w = torch.tensor([[0.4, 1.5], [-1.0, 0.2]])
    stimuli = [-1.0, -0.25, 0.25, 1.0, 1.0]
    got = expected_update(Reinforce(), {"alpha": alpha}, w, *trial_mix(stimuli, NAMES))
    want = torch.zeros_like(w)
    for s in stimuli:
        x = torch.tensor([1.0, s])
        p = torch.sigmoid(w @ x)
        want += alpha * (p * (1 - p)).unsqueeze(-1) * x * (1.0 if s > 0 else -1.0) / len(stimuli)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_a_reward_baseline_changes_the_update_but_not_the_drift_field():
    # The baseline term beta (y - p) x averages to zero over the choice: the reshuffling of the update between
    # trial kinds that choices identify only weakly.
    params = {b: {"alpha": torch.tensor([0.05, 0.05]), "beta": torch.tensor(b)} for b in (0.0, 0.5)}
    grid = {"bias": [-1.0, 0.0, 2.0], "stimulus": [0.0, 1.0, 3.0]}
    stimuli = [-1.0, -0.5, 0.0, 0.0, 0.5, 1.0]
    fields = [rule_drift_grid(ReinforceBaseline(), params[b], weights_grid=grid, stimuli=stimuli,
                              feature_names=NAMES) for b in (0.0, 0.5)]
    updates = [rule_update_grid(ReinforceBaseline(), params[b], weights_grid=grid, stimulus_grid=stimuli,
                                feature_names=NAMES) for b in (0.0, 0.5)]
    assert list(fields[0].columns) == ["w_bias", "w_stimulus", "feature", "dw"] and len(fields[0]) == 9 * 2
    np.testing.assert_allclose(fields[0].dw, fields[1].dw, rtol=0, atol=1e-15)
    assert np.abs(fields[0].dw).max() > 1e-3
    assert np.abs(updates[0].dw - updates[1].dw).max() > 1e-2


def test_expected_update_is_the_average_over_simulated_trials():
    # Monte Carlo: draw trials as the IBL task does (random side at 0% contrast) and choices from the policy.
    rule = MLPRule(2, hidden=(8,), init_scale=1.0, seed=3)
    w = torch.tensor([0.3, 1.2])
    rng = np.random.default_rng(0)
    n = 400_000
    stimulus = rng.choice([-1.0, -0.25, 0.0, 0.25, 1.0], size=n, p=[0.1, 0.2, 0.4, 0.2, 0.1])
    side = np.where(stimulus > 0, 1.0, np.where(stimulus < 0, 0.0, rng.integers(0, 2, size=n)))
    x = torch.as_tensor(np.stack([np.ones(n), stimulus], axis=1))
    p = torch.sigmoid(x @ w)
    y = torch.as_tensor(rng.random(n) < p.numpy(), dtype=torch.float64)
    r = (y == torch.as_tensor(side)).double()
    with torch.no_grad():
        dw = rule.drift({}, w.expand(n, 2), x, y, r, torch.zeros(n, 0))
    mc, se = dw.mean(0), dw.std(0) / np.sqrt(n)
    got = expected_update(rule, {}, w, *trial_mix(stimulus, NAMES))
    assert ((got - mc).abs() < 4 * se).all(), (got, mc, se)
    assert (se < 0.05 * got.abs()).all()  # the check is sharp: the field is well above its MC error


def test_reinforce_strengthens_every_stimulus_weight_on_average():
    # Rewarded choices follow the stimulus side, so at every weight state REINFORCE's expected update drives the
    # right-stimulus weight up and the left-stimulus weight down (P(right) = sigmoid(w . x)), and leaves the
    # bias alone when the sides balance: bias 0 and mirror-image stimulus weights.
    names = ["bias", "stimulus_left", "stimulus_right"]
    grid = {n: np.linspace(-3.0, 3.0, 7) for n in names}
    field = rule_drift_grid(Reinforce(), {"alpha": torch.full((3,), 0.1)}, weights_grid=grid,
                            stimuli=[-1.0, -0.25, 0.0, 0.25, 1.0], feature_names=names)
    assert (field[field.feature == "stimulus_right"].dw > 0).all()
    assert (field[field.feature == "stimulus_left"].dw < 0).all()
    bias = field[field.feature == "bias"]
    mirror = bias[(bias.w_bias == 0) & (bias.w_stimulus_left == -bias.w_stimulus_right)]
    assert len(mirror) == 7
    np.testing.assert_allclose(mirror.dw, 0.0, atol=1e-15)
