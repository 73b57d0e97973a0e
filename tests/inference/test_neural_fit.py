"""Neural rules (MLP, GRU) fitted inside the variational fit: prediction, no mutation, save/load, mini-batches."""

import numpy as np
import pytest
import torch

from learnrules.inference.evaluation.evaluate import gaussian_filter_loglik
from learnrules.inference.result import FitResult
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.inference.variational.optimize import StepGuard
from learnrules.inference.variational.vi import Hyper, update_posterior
from learnrules.models.dynamics import DynamicsConfig
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import GRURule, MLPRule
from learnrules.other_rules import Reinforce
from learnrules.synthetic import simulate_cohort


def heldout_score(res: FitResult, rule, params, test: CohortTensors) -> float:
    """Held-out-animal log-likelihood per trial: initial weights from the training animals' spread."""
    w0 = res.weights_mean[:, 0]
    sd0 = np.sqrt(w0.var(0) + (res.weights_sd[:, 0] ** 2).mean(0))
    return gaussian_filter_loglik(test, rule, params, sigma=res.sigma, init_mean=w0.mean(0),
                                  init_sd=sd0).nats_per_trial


NEURAL = FitConfig(dynamics=DynamicsConfig(sigma=0.05, sigma_init=2.0), optimizer="adam", lr=0.05,
                   network_lr=2e-2, inner_max_iter=3, param_posterior="none")


def small_data(n_trials=200, n_animals=2, seed=1):
    sim = simulate_cohort(Reinforce(), n_animals=n_animals, n_trials=n_trials, sigma=0.01, seed=seed)
    return sim.tensors(np.arange(n_animals))


def test_mlp_rule_fit_by_vi_predicts_heldout_animals_near_the_oracle():
    truth = Reinforce()
    sim = simulate_cohort(truth, n_animals=8, n_trials=1500, sigma=0.01, seed=0)
    train, test = sim.tensors(np.arange(6)), sim.tensors(np.arange(6, 8))
    res = fit(train, rule=MLPRule(2, hidden=(16, 16), seed=0), config=FitConfig(**{**NEURAL.__dict__,
                                                                                   "max_steps": 60}), seed=0)
    mlp = heldout_score(res, res.neural_rule(), {}, test)
    oracle = gaussian_filter_loglik(test, truth, sim.params, sigma=0.01, init_mean=0.0, init_sd=0.5).nats_per_trial
    zero = heldout_score(res, MLPRule(2, init_scale=0.0), {}, test)
    # measured: mlp 0.0021 nats/trial below the oracle (-0.4932)
    assert mlp - oracle > -0.004
    assert mlp - zero > 0.006
    assert res.params == {} and set(res.parameters["parameter"]) == {"sigma"}
    assert np.all(res.sigma < 0.03)  # from 0.05 towards the true 0.01


def test_fit_trains_a_copy_and_save_load_restores_the_network_exactly(tmp_path):
    data = small_data()
    rule = MLPRule(2, hidden=(8,), seed=3)
    before = {k: v.clone() for k, v in rule.state_dict().items()}
    res = fit(data, rule=rule, config=FitConfig(**{**NEURAL.__dict__, "max_steps": 5}), seed=0)
    for k, v in rule.state_dict().items():
        assert torch.equal(v, before[k])
    assert not np.array_equal(res.rule_state["mlp.0.weight"], before["mlp.0.weight"].numpy())
    back = FitResult.load(res.save(tmp_path / "neural.npz"))
    assert back.rule_config == res.rule_config and back.rule_config["kind"] == "mlp"
    trained, loaded = res.neural_rule(), back.neural_rule()
    for k, v in trained.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    w = torch.randn(4, 2, dtype=torch.float64)
    x, y, r = torch.randn(4, 2, dtype=torch.float64), torch.tensor([0.0, 1, 1, 0]), torch.tensor([1.0, 0, 1, 0])
    ctx = torch.zeros(4, 0)
    assert torch.equal(trained.drift({}, w, x, y, r, ctx), loaded.drift({}, w, x, y, r, ctx))
    assert FitResult.load(fit(data, config=FitConfig(max_steps=2)).save(tmp_path / "rw.npz")).neural_rule() is None


def test_gru_fit_runs_and_its_elbo_improves():
    data = small_data(n_trials=400, n_animals=3, seed=2)
    rule = GRURule(2, hidden=(8,), gru_hidden=4, seed=0)
    res = fit(data, rule=rule, config=FitConfig(**{**NEURAL.__dict__, "max_steps": 25}), seed=0)
    assert res.rule_config["kind"] == "gru" and res.n_steps == 25
    # measured: ELBO from -761.4 to -754.6 in 25 Adam steps
    assert res.elbo - res.elbo_trace[0] > 4.0
    assert np.all(np.isfinite(res.weights_mean))


def test_minibatch_fit_is_seeded_and_refreshes_every_posterior_at_the_end():
    data = small_data(n_trials=150, n_animals=4, seed=4)
    config = FitConfig(**{**NEURAL.__dict__, "max_steps": 6, "batch_size": 2, "inner_max_iter": 50,
                          "inner_tol": 1e-12})
    a = fit(data, rule=MLPRule(2, hidden=(8,), seed=0), config=config, seed=7)
    b = fit(data, rule=MLPRule(2, hidden=(8,), seed=0), config=config, seed=7)
    np.testing.assert_array_equal(a.weights_mean, b.weights_mean)
    k = data.n_features
    hyper = Hyper(torch.as_tensor(a.sigma), None, torch.as_tensor(a.sigma_init), torch.as_tensor(a.init_mean), {})
    fresh = update_posterior(a.neural_rule(), hyper, data, max_iter=100, tol=1e-12)
    np.testing.assert_allclose(a.weights_mean, fresh.mean.numpy(), atol=1e-5)
    assert a.elbo == pytest.approx(float(fresh.elbo.sum()), rel=1e-7)
    assert a.weights_mean.shape == (4, 150, k)


@pytest.mark.parametrize("batch_size", [None, 1])
def test_each_step_is_judged_on_the_whole_cohort_or_on_its_batch(batch_size, monkeypatch):
    changes = []
    keep = StepGuard.keep

    def spy(self, leaves, value, change=None):
        changes.append(change)
        return keep(self, leaves, value, change)

    monkeypatch.setattr(StepGuard, "keep", spy)
    data = small_data(n_trials=100, n_animals=3, seed=5)
    fit(data, rule=MLPRule(2, hidden=(8,), seed=0),
        config=FitConfig(**{**NEURAL.__dict__, "max_steps": 5, "batch_size": batch_size}), seed=0)
    assert len(changes) == 5 and changes[0] is None  # the first pass updates every animal
    if batch_size is None:
        assert all(c is None for c in changes)  # the exact ELBO against the last kept point
    else:  # the batch's ELBO at its animals' last update and now
        assert all(len(c) == 2 and np.isfinite(c).all() and c[0] != c[1] for c in changes[1:])


def test_nan_in_the_network_raises_the_named_error():
    data = small_data(n_trials=50)
    rule = MLPRule(2, hidden=(8,), seed=0)
    with torch.no_grad():
        rule.network.mlp[0].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"step \d+.*(drift|network)"):
        fit(data, rule=rule, config=FitConfig(**{**NEURAL.__dict__, "max_steps": 3}))


def test_batch_size_and_lr_decay_are_validated():
    with pytest.raises(ValueError, match="batch_size"):
        FitConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr_decay"):
        FitConfig(lr_decay=1.5)
