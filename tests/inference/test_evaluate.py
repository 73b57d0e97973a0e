"""Held-out predictive scores: particle filter vs exact rollout, vs a grid forward filter, and twins."""

import math

import numpy as np
import pytest
import torch

from learnrules.behavior import load_trials
from learnrules.inference.evaluation.crossval import mask_trials
from learnrules.inference.evaluation.evaluate import (
    PredictiveScore,
    gaussian_filter_loglik,
    particle_filter_loglik,
    rollout_loglik,
)
from learnrules.inference.evaluation.filters import systematic_resample
from learnrules.inference.twin import accuracy_by_session, psychometric, simulate_twin
from learnrules.models.inputs import CohortTensors
from learnrules.other_rules import make_rule
from learnrules.synthetic import simulate_cohort


def _cohort(rule_name="reinforce-baseline", *, n_animals=3, n_trials=600, sigma=0.0, features=("bias", "stimulus"),
            seed=1):
    sim = simulate_cohort(make_rule(rule_name), n_animals=n_animals, n_trials=n_trials, sigma=sigma,
                          init_sd=0.5, features=features, seed=seed)
    data = load_trials(sim.table)
    return sim, data, CohortTensors.from_trials(data, features)


@pytest.mark.parametrize("rule_name", ["reinforce-baseline", "compressed"])
def test_particle_filter_equals_rollout_when_deterministic(rule_name):
    # compressed is simulator-only (fittable=False): both scorers take the rule.step path
    sim, data, cohort = _cohort(rule_name)
    rule, w0 = make_rule(rule_name), torch.as_tensor(sim.weights[:, 0])
    exact = rollout_loglik(cohort, rule, sim.params, init_weights=w0)
    pf = particle_filter_loglik(cohort, rule, sim.params, sigma=0.0, init_mean=w0, init_sd=0.0, n_particles=16,
                                n_replicates=3, seed=0)
    assert exact.n_trials == pf.n_trials == 3 * 600
    assert np.nanmax(np.abs(pf.loglik - exact.loglik)) < 1e-6
    assert abs(pf.total - exact.total) < 1e-6
    assert pf.mc_se == pytest.approx(0.0, abs=1e-9)  # reported, and zero: every particle is the same rollout
    # the rollout reproduces the simulator's own choice probabilities
    np.testing.assert_allclose(exact.p_right, sim.choice_prob, atol=1e-10)


def test_rollout_matches_the_rollout_fit_module():
    rollout = pytest.importorskip("learnrules.inference.rollout.rollout")
    sim, data, cohort = _cohort()
    rule, w0 = make_rule("reinforce-baseline"), torch.as_tensor(sim.weights[:, 0])
    params = {k: torch.as_tensor(v) for k, v in sim.params.items()}
    theirs = rollout.rollout_loglik(cohort, rule, params, w0).numpy()
    ours = rollout_loglik(cohort, rule, sim.params, init_weights=w0)
    np.testing.assert_allclose(np.nan_to_num(ours.loglik), theirs, atol=1e-10)


def test_missing_choices_have_no_term_and_no_update():
    sim, data, _ = _cohort(n_animals=2, n_trials=300)
    masks = {s: np.arange(300) % 7 == 3 for s in data.subjects}
    cohort = CohortTensors.from_trials(mask_trials(data, masks))
    rule, w0 = make_rule("reinforce-baseline"), torch.as_tensor(sim.weights[:, 0])
    exact = rollout_loglik(cohort, rule, sim.params, init_weights=w0)
    pf = particle_filter_loglik(cohort, rule, sim.params, sigma=0.0, init_mean=w0, init_sd=0.0, n_particles=4,
                                n_replicates=2, seed=0)
    assert np.isnan(exact.loglik[:, 3::7]).all() and np.isnan(pf.loglik[:, 3::7]).all()
    assert exact.n_trials == 2 * (300 - len(range(3, 300, 7)))
    assert np.nanmax(np.abs(pf.loglik - exact.loglik)) < 1e-6
    # skipping updates changes the predictions of later trials relative to the full data
    full = rollout_loglik(CohortTensors.from_trials(data), rule, sim.params, init_weights=w0)
    assert np.nanmax(np.abs(full.p_right - exact.p_right)) > 1e-3


def test_mc_se_positive_and_estimate_near_high_particle_reference():
    sim, data, cohort = _cohort(n_animals=2, n_trials=400, sigma=0.05, seed=4)
    rule = make_rule("reinforce-baseline")
    kw = dict(sigma=0.05, init_mean=0.0, init_sd=0.5)
    est = particle_filter_loglik(cohort, rule, sim.params, n_particles=128, n_replicates=4, seed=1, **kw)
    ref = particle_filter_loglik(cohort, rule, sim.params, n_particles=2048, n_replicates=2, seed=2, **kw)
    assert est.mc_se > 0 and ref.mc_se > 0
    assert ref.mc_se < est.mc_se  # more particles, smaller error
    assert abs(est.total - ref.total) < 4 * math.hypot(est.mc_se, ref.mc_se) + 0.05


_GRID = np.linspace(-6, 6, 721)


def _grid_forward(choice, x, *, sigma, init_mean, init_sd, grid=_GRID):
    """Exact (grid) forward filter for a 1-D random walk weight with a Bernoulli-logit observation.

    Returns the log predictive and the predictive p(right) of each trial.
    """
    kernel = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / sigma) ** 2)
    kernel /= kernel.sum(0, keepdims=True)
    belief = np.exp(-0.5 * ((grid - init_mean) / init_sd) ** 2)
    belief /= belief.sum()
    out, p_right = [], []
    for y, xt in zip(choice, x, strict=True):
        p = 1 / (1 + np.exp(-grid * xt))
        lik = p if y == 1 else 1 - p
        pred = float((belief * lik).sum())
        out.append(math.log(pred))
        p_right.append(float((belief * p).sum()))
        belief = kernel @ (belief * lik / pred)
    return np.array(out), np.array(p_right)


def test_random_walk_filter_matches_exact_grid_forward_filter():
    sim, data, cohort = _cohort("zero", n_animals=2, n_trials=250, sigma=0.2, features=("bias",), seed=5)
    pf = particle_filter_loglik(cohort, make_rule("zero"), {}, sigma=0.2, init_mean=0.0, init_sd=0.5,
                                n_particles=1024, n_replicates=4, seed=0)
    exact, p_exact = np.stack([_grid_forward(cohort.choice[a].numpy(), cohort.features[a, :, 0].numpy(),
                                             sigma=0.2, init_mean=0.0, init_sd=0.5) for a in range(2)], 1)
    assert abs(pf.total - exact.sum()) < 4 * pf.mc_se + 0.05
    error = np.abs(pf.p_right - p_exact)  # per-trial predictive too (measured: mean 0.0023, max 0.033)
    assert error.mean() < 0.005 and error.max() < 0.06


def test_gaussian_filter_exact_when_deterministic_and_close_to_exact_grid():
    sim, data, cohort = _cohort(n_animals=2, n_trials=400)
    rule, w0 = make_rule("reinforce-baseline"), torch.as_tensor(sim.weights[:, 0])
    adf = gaussian_filter_loglik(cohort, rule, sim.params, sigma=0.0, init_mean=w0, init_sd=0.0)
    exact = rollout_loglik(cohort, rule, sim.params, init_weights=w0)
    assert np.nanmax(np.abs(adf.loglik - exact.loglik)) < 1e-6 and adf.mc_se == 0.0
    sim, data, cohort = _cohort("zero", n_animals=2, n_trials=250, sigma=0.2, features=("bias",), seed=5)
    adf = gaussian_filter_loglik(cohort, make_rule("zero"), {}, sigma=0.2, init_mean=0.0, init_sd=0.5)
    grid, _ = np.stack([_grid_forward(cohort.choice[a].numpy(), cohort.features[a, :, 0].numpy(), sigma=0.2,
                                      init_mean=0.0, init_sd=0.5) for a in range(2)], 1)
    assert abs(adf.total - grid.sum()) < 0.001 * abs(grid.sum())  # measured: 0.19 of 288 nats
    with pytest.raises(ValueError, match="particle filter"):
        gaussian_filter_loglik(cohort, make_rule("compressed"), {}, sigma=0.1, init_mean=0.0, init_sd=1.0)


def test_gaussian_filter_agrees_with_particle_filter_for_a_noisy_rule():
    sim, data, cohort = _cohort(n_animals=2, n_trials=600, sigma=0.05, seed=4)
    rule, kw = make_rule("reinforce-baseline"), dict(sigma=0.05, init_mean=0.0, init_sd=0.5)
    adf = gaussian_filter_loglik(cohort, rule, sim.params, **kw)
    pf = particle_filter_loglik(cohort, rule, sim.params, n_particles=512, n_replicates=4, seed=0, **kw)
    assert abs(adf.total - pf.total) < 3 * pf.mc_se + 1.0


def test_chance_predictor_scores_exactly_one_bit():
    sim, data, cohort = _cohort("zero", n_animals=2, n_trials=100)
    score = rollout_loglik(cohort, make_rule("zero"), {}, init_weights=0.0)
    assert score.nats_per_trial == pytest.approx(-math.log(2))
    assert score.bits_per_trial == pytest.approx(-1.0)
    assert score.bits_over_chance == pytest.approx(0.0)
    assert score.accuracy == pytest.approx(float((cohort.choice == 0).double().mean()))  # p=0.5 predicts left


def test_score_accounting_restrict_and_per_animal():
    sim, data, cohort = _cohort(n_animals=3, n_trials=200)
    score = rollout_loglik(cohort, make_rule("reinforce-baseline"), sim.params,
                           init_weights=torch.as_tensor(sim.weights[:, 0]))
    table = score.per_animal()
    assert table["loglik"].sum() == pytest.approx(score.total)
    assert list(table["subject"]) == list(data.subjects)
    hit = (sim.choice_prob > 0.5) == (cohort.choice.numpy() == 1)
    assert score.accuracy == pytest.approx(hit.mean())
    mask = np.zeros_like(score.scored)
    mask[1, 50:150] = True
    sub = score.restrict(mask)
    assert sub.n_trials == 100
    assert sub.total == pytest.approx(np.sum(score.loglik[1, 50:150]))
    assert isinstance(sub, PredictiveScore) and np.isnan(sub.loglik[0]).all()
    with pytest.raises(ValueError, match="mask has shape"):
        score.restrict(mask[:, :10])


def test_bad_prior_shape_is_rejected():
    sim, data, cohort = _cohort(n_animals=2, n_trials=50)
    with pytest.raises(ValueError, match="init_mean"):
        particle_filter_loglik(cohort, make_rule("zero"), {}, sigma=0.1, init_mean=np.zeros(5), init_sd=1.0)


def test_systematic_resample_counts_match_weights():
    gen = torch.Generator().manual_seed(0)
    w = torch.tensor([[0.5, 0.25, 0.125, 0.125]])
    idx = systematic_resample(w.log(), gen)
    counts = torch.bincount(idx[0], minlength=4)
    assert counts.tolist() == [2, 1, 0, 1] or counts.tolist() == [2, 1, 1, 0]


def test_twin_replays_stimuli_and_learns_like_the_animal():
    sim, data, _ = _cohort(n_animals=4, n_trials=1500, seed=7)
    twin = simulate_twin(data, make_rule("reinforce-baseline"), sim.params, init_weights=sim.weights[:, 0],
                         seed=3)
    real = data.to_frame()
    assert list(twin.columns) == [*real.columns, "p_right"]
    np.testing.assert_array_equal(twin["contrastLeft"], real["contrastLeft"])
    assert ((twin["reward"] == 1) == (twin["choice"] == twin["answer"])).all()
    acc_twin = accuracy_by_session(twin).groupby("session_index")["accuracy"].mean()
    acc_real = accuracy_by_session(real).groupby("session_index")["accuracy"].mean()
    assert acc_twin.iloc[-1] > acc_twin.iloc[0] + 0.1  # the twin learns
    assert np.abs(acc_twin - acc_real).max() < 0.08  # like the animal
    late = psychometric(twin, sessions=slice(-1, None))
    assert late["p_right"].iloc[-1] - late["p_right"].iloc[0] > 0.6  # steep late psychometric curve


def test_twin_of_a_static_rule_has_the_glm_probabilities():
    sim, data, cohort = _cohort(n_animals=2, n_trials=100)
    w0 = np.array([[0.3, 2.0], [-0.5, 1.0]])
    twin = simulate_twin(data, make_rule("zero"), {}, init_weights=w0, seed=0)
    expected = 1 / (1 + np.exp(-(cohort.features.numpy() * w0[:, None]).sum(-1)))
    np.testing.assert_allclose(twin["p_right"].to_numpy(), expected.reshape(-1))
    by_subject = simulate_twin(data, make_rule("zero"), {}, init_weights=dict(zip(data.subjects, w0, strict=True)),
                               seed=0)
    np.testing.assert_array_equal(by_subject["choice"], twin["choice"])


class _Runaway(make_rule("reinforce").__class__):
    """REINFORCE plus 5% weight growth per trial: its rollout leaves every state the animals visited."""

    def drift(self, params, w, x, y, r, context):
        return super().drift(params, w, x, y, r, context) + 0.05 * w


def test_scores_warn_when_the_predictive_gives_a_choice_probability_below_1e_8(caplog):
    sim, data, cohort = _cohort("reinforce")
    w0 = torch.as_tensor(sim.weights[:, 0])
    gaussian_filter_loglik(cohort, make_rule("reinforce"), sim.params, sigma=0.0, init_mean=w0, init_sd=0.0)
    rollout_loglik(cohort, make_rule("reinforce"), sim.params, init_weights=w0)
    assert "diverge" not in caplog.text  # the true rule: no warning
    runaway = rollout_loglik(cohort, _Runaway(), sim.params, init_weights=w0)
    assert "choices of 3 animals have probability < 1e-08 under the rollout predictive" in caplog.text
    assert runaway.nats_per_trial < -1.0
