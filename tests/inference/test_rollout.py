import logging
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
import torch

from learnrules.inference.rollout import rollout_fit
from learnrules.inference.rollout.early_stopping import holdout_sessions
from learnrules.inference.rollout.rollout import (
    estimate_initial_weights,
    predict_heldout,
    rollout_loglik,
    rollout_trajectory,
)
from learnrules.inference.rollout.rollout_fit import RolloutConfig, fit_rollout
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import GRURule, MLPRule
from learnrules.models.rule import LearningRule
from learnrules.other_rules import Reinforce, ZeroRule
from learnrules.synthetic import simulate_cohort
from learnrules.workflow import rollout_to_result


@pytest.fixture(scope="module")
def reinforce_sim():
    torch.set_default_dtype(torch.float64)
    return simulate_cohort(Reinforce(), n_animals=12, n_trials=400, params={"alpha": [0.1, 0.1]}, seed=3)


def test_rollout_reproduces_simulator_weights_exactly(reinforce_sim):
    sim, cohort = reinforce_sim, reinforce_sim.tensors()
    params = {k: torch.as_tensor(v) for k, v in sim.params.items()}
    w0 = torch.as_tensor(sim.weights[:, 0])
    weights, w_end, _ = rollout_trajectory(Reinforce(), params, cohort.features, cohort.choice, cohort.reward,
                                           cohort.observed, w0)
    np.testing.assert_allclose(weights.numpy(), sim.weights, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w_end.numpy(), sim.weights[:, -1] + sim.updates[:, -1], atol=1e-12)
    # Per-trial log-likelihood equals the Bernoulli terms of the simulator's choice probabilities.
    ll = rollout_loglik(cohort, Reinforce(), params, w0, chunk=64).numpy()
    y, p = cohort.choice.numpy(), sim.choice_prob
    np.testing.assert_allclose(ll, y * np.log(p) + (1 - y) * np.log1p(-p), atol=1e-10)


def test_missing_choices_do_not_update_or_score(reinforce_sim):
    cohort = reinforce_sim.tensors()
    observed = cohort.observed.clone()
    observed[:, 10:20] = False
    cohort = CohortTensors(cohort.features, cohort.choice, cohort.reward, observed, cohort.valid,
                           cohort.session_start, cohort.lengths, cohort.feature_names, cohort.subjects)
    params = {"alpha": torch.tensor([0.1, 0.1])}
    w0 = torch.zeros(cohort.n_animals, 2)
    weights, _, _ = rollout_trajectory(Reinforce(), params, cohort.features, cohort.choice, cohort.reward,
                                       observed, w0)
    assert torch.equal(weights[:, 10], weights[:, 20])
    assert not torch.equal(weights[:, 9], weights[:, 10]) or not torch.equal(weights[:, 20], weights[:, 21])
    ll = rollout_loglik(cohort, Reinforce(), params, w0)
    assert (ll[:, 10:20] == 0).all() and (ll[:, :10] < 0).all()


def test_fit_recovers_reinforce_alpha(reinforce_sim):
    cohort = reinforce_sim.tensors()
    true_w0 = torch.as_tensor(reinforce_sim.weights[:, 0])
    config = RolloutConfig(epochs=20, lr=0.1, tbptt=400, init_lr=0.05)
    res = fit_rollout(cohort, Reinforce(), config=config, params={"alpha": torch.tensor([0.03, 0.03])}, seed=0)
    alpha = res.params["alpha"]
    assert alpha.shape == (2,)
    assert torch.allclose(alpha, torch.tensor([0.1, 0.1]), rtol=0.2), alpha
    assert res.init_weights.shape == (12, 2)
    assert (res.init_weights - true_w0).abs().mean() < 0.6
    assert res.n_steps == 20 and res.n_updates == 20 and res.elapsed_s > 0
    assert res.train_loglik.shape == (12, 400) and res.losses[-1] < res.losses[0]


def exact_gradient(cohort, rule, params, w0, scored=None):
    """Gradient of the untruncated mean NLL of the ``scored`` trials in (params, initial weights)."""
    params = {k: v.clone().requires_grad_() for k, v in params.items()}
    w0 = w0.clone().requires_grad_()
    nll = -rollout_trajectory_loglik(cohort, rule, params, w0, scored)
    grads = torch.autograd.grad(nll, [*params.values(), w0])
    return torch.cat([g.reshape(-1) for g in grads])


def rollout_trajectory_loglik(cohort, rule, params, w0, scored=None):
    """Mean log-likelihood of the ``scored`` trials (default: all observed) of the rollout through all."""
    mask = cohort.observed & cohort.valid
    scored = mask if scored is None else scored & mask
    weights, _, _ = rollout_trajectory(rule, params, cohort.features, cohort.choice, cohort.reward, mask, w0)
    p = torch.sigmoid((weights * cohort.features).sum(-1))
    y = cohort.choice
    return ((y * torch.log(p) + (1 - y) * torch.log1p(-p)) * scored).sum() / scored.sum()


def test_lbfgs_fit_reaches_a_stationary_point_of_the_exact_likelihood(reinforce_sim):
    # L-BFGS must use the untruncated gradient: a fit on truncated gradients stops away from the stationary
    # point of the loss it reports, and its line search misbehaves.
    cohort = reinforce_sim.tensors()
    config = RolloutConfig(epochs=15, optimizer="lbfgs", tbptt=50, tol=1e-12)
    res = fit_rollout(cohort, Reinforce(), config=config, params={"alpha": torch.tensor([0.03, 0.03])}, seed=0)
    grad = exact_gradient(cohort, Reinforce(), res.params, res.init_weights)
    assert grad.abs().max() < 1e-5, grad
    assert res.n_updates == res.n_steps and res.losses[-1] < res.losses[0]
    # It reaches a higher likelihood than the Adam fit of test_fit_recovers_reinforce_alpha.
    adam = fit_rollout(cohort, Reinforce(), config=RolloutConfig(epochs=20, lr=0.1, tbptt=400, init_lr=0.05),
                       params={"alpha": torch.tensor([0.03, 0.03])}, seed=0)
    assert float(res.train_loglik.sum()) > float(adam.train_loglik.sum())


def test_lbfgs_warmup_takes_adams_steps_first_then_reaches_a_stationary_point(reinforce_sim):
    cohort, start = reinforce_sim.tensors(), {"alpha": torch.tensor([0.03, 0.03])}
    adam_options = {"lr": 0.1, "tbptt": 100, "init_lr": 0.05}
    adam = fit_rollout(cohort, Reinforce(), config=RolloutConfig(epochs=3, **adam_options), params=start, seed=0)
    warm = RolloutConfig(optimizer="lbfgs", warmup_epochs=3, tol=1e-12, **adam_options)
    only_warmup = fit_rollout(cohort, Reinforce(), config=replace(warm, epochs=3), params=start, seed=0)
    torch.testing.assert_close(only_warmup.params["alpha"], adam.params["alpha"], rtol=0, atol=1e-12)
    assert only_warmup.n_updates == adam.n_updates == 3 * 4  # four chunks of 100 trials per epoch
    res = fit_rollout(cohort, Reinforce(), config=replace(warm, epochs=18), params=start, seed=0)
    assert res.n_updates == 3 * 4 + 15
    grad = exact_gradient(cohort, Reinforce(), res.params, res.init_weights)
    assert grad.abs().max() < 1e-5, grad


def with_sessions(cohort, length):
    """The cohort with a session starting every ``length`` trials."""
    starts = (torch.arange(cohort.features.shape[1]) % length == 0).expand_as(cohort.observed).clone()
    return replace(cohort, session_start=starts)


def test_held_out_trials_move_the_weights_but_stay_out_of_the_loss(reinforce_sim):
    cohort = reinforce_sim.tensors()
    held = holdout_sessions(cohort, seed=0)
    cohort = replace(cohort, observed=(torch.arange(400) % 7 != 3).expand(12, 400))  # missing choices count nowhere
    config = RolloutConfig(epochs=15, optimizer="lbfgs", tol=1e-12)
    res = fit_rollout(cohort, Reinforce(), config=config, params={"alpha": torch.tensor([0.03, 0.03])},
                      holdout=held, seed=0)
    # A stationary point of the likelihood of the fitted trials, along the rollout through every trial ...
    grad = exact_gradient(cohort, Reinforce(), res.params, res.init_weights, scored=~held)
    assert grad.abs().max() < 1e-5, grad
    assert exact_gradient(cohort, Reinforce(), res.params, res.init_weights).abs().max() > 1e-3
    # ... scored on the held-out trials after each step.
    ll = rollout_trajectory_loglik(cohort, Reinforce(), res.params, res.init_weights, scored=held)
    assert len(res.val_loglik) == res.n_steps and res.val_loglik[-1] == pytest.approx(float(ll), abs=1e-12)
    assert res.losses[-1] == pytest.approx(-float(rollout_trajectory_loglik(
        cohort, Reinforce(), res.params, res.init_weights, scored=~held)), rel=1e-6)


def test_early_stopping_on_held_out_trials_keeps_their_best_state(reinforce_sim):
    cohort = with_sessions(reinforce_sim.tensors(), 50)
    held = holdout_sessions(cohort, seed=0)
    config = RolloutConfig(epochs=60, lr=0.3, init_lr=0.1, tbptt=100, patience=3)  # overshooting Adam steps
    res = fit_rollout(cohort, Reinforce(), config=config, params={"alpha": torch.tensor([0.03, 0.03])},
                      holdout=held, seed=0)
    assert res.stop_reason.startswith("early stop") and res.n_steps < 60
    kept = rollout_trajectory_loglik(cohort, Reinforce(), res.params, res.init_weights, scored=held)
    assert float(kept) == pytest.approx(max(res.val_loglik), abs=1e-12) and max(res.val_loglik) > res.val_loglik[-1]


def _network_norm2(rule) -> float:
    return float(sum(p.detach().square().sum() for p in rule.network.parameters()))


def test_weight_decay_is_a_map_fit_of_the_network():
    # L-BFGS stops at a stationary point of NLL per trial + weight_decay / 2 * ||theta||^2, not of the NLL.
    sim = simulate_cohort(Reinforce(), n_animals=6, n_trials=200, params={"alpha": [0.1, 0.1]}, seed=3)
    cohort, w0 = sim.tensors(), torch.as_tensor(sim.weights[:, 0])
    decay = 1e-2
    config = RolloutConfig(epochs=40, optimizer="lbfgs", init_weights="fixed", weight_decay=decay)
    res = fit_rollout(cohort, MLPRule(2, hidden=(8,), activation="tanh", seed=0), config=config, init_weights=w0)
    theta = list(res.rule.network.parameters())
    nll = -rollout_trajectory_loglik(cohort, res.rule, {}, w0)
    penalized = torch.autograd.grad(nll + decay / 2 * sum(p.square().sum() for p in theta), theta,
                                    retain_graph=True)
    unpenalized = torch.autograd.grad(nll, theta)
    largest = [max(float(g.abs().max()) for g in grads) for grads in (penalized, unpenalized)]
    assert largest[0] < 1e-4 and largest[0] < 0.05 * largest[1], largest


def test_weight_decay_shrinks_adam_fit_and_leaves_parametric_rules_alone(reinforce_sim):
    cohort = reinforce_sim.tensors()
    fits = [fit_rollout(cohort, MLPRule(2, hidden=(8,), seed=0), seed=0,
                        config=RolloutConfig(epochs=5, lr=0.05, tbptt=100, weight_decay=decay))
            for decay in (0.0, 0.1)]
    assert _network_norm2(fits[1].rule) < _network_norm2(fits[0].rule)
    start = {"alpha": torch.tensor([0.03, 0.03])}
    alphas = [fit_rollout(cohort, Reinforce(), params=start, seed=0,
                          config=RolloutConfig(epochs=3, lr=0.05, weight_decay=decay)).params["alpha"]
              for decay in (0.0, 0.1)]
    assert torch.equal(alphas[0], alphas[1])


class _NanAbove(Reinforce):
    """REINFORCE whose update is NaN once a learning rate passes 0.06: a rollout that diverges."""

    def drift(self, params, w, x, y, r, context):
        dw = super().drift(params, w, x, y, r, context)
        return torch.where(params["alpha"] > 0.06, torch.full_like(dw, float("nan")), dw)


@pytest.mark.parametrize("solver", ["parallel", "sequential"])
def test_lbfgs_line_search_backs_off_from_a_diverging_rollout(reinforce_sim, caplog, solver):
    cohort = reinforce_sim.tensors()
    start = {"alpha": torch.tensor([0.05, 0.05])}  # the data (alpha 0.1) pull it past 0.06
    with caplog.at_level(logging.INFO, logger="learnrules.inference.rollout.rollout_fit"):
        res = fit_rollout(cohort, _NanAbove(), params=start,
                          config=RolloutConfig(epochs=10, optimizer="lbfgs", solver=solver))
    assert "trials met a diverging rollout and were backed off from" in caplog.text
    assert res.stop_reason == "max epochs" and res.n_steps == 10
    assert (res.params["alpha"] <= 0.06).all() and torch.isfinite(res.train_loglik).all()
    # It keeps climbing towards the edge of the finite side (0.06), where the likelihood is still rising.
    assert float(res.params["alpha"].max()) > 0.055 and res.losses[-1] < res.losses[0]


@pytest.mark.slow
def test_mlp_fit_learns_reinforce_update():
    # Known initial weights, as in Liu et al.'s main-text simulations: with free per-animal initial weights an
    # MLP can trade them against a mean-reverting rule, and the per-trial update is poorly identified.
    sim = simulate_cohort(Reinforce(), n_animals=30, n_trials=300, params={"alpha": [0.5, 0.5]}, seed=1)
    cohort = sim.tensors()
    mlp = MLPRule(2, hidden=(16, 16), seed=0)
    before = [p.detach().clone() for p in mlp.network.parameters()]
    config = RolloutConfig(epochs=150, lr=0.01, tbptt=100, init_weights="fixed")
    res = fit_rollout(cohort, mlp, config=config, init_weights=torch.as_tensor(sim.weights[:, 0]), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, mlp.network.parameters(), strict=True))  # not mutated
    n = float(cohort.observed.sum())
    zero = float(rollout_loglik(cohort, ZeroRule(), {}, res.init_weights).sum()) / n
    fitted = float(res.train_loglik.sum()) / n
    assert fitted > zero + 0.03, (fitted, zero)
    with torch.no_grad():
        w = torch.as_tensor(sim.weights)
        dw = res.rule.drift({}, w, cohort.features, cohort.choice, cohort.reward, torch.zeros(30, 300, 0))
    corr = np.corrcoef(sim.updates.ravel(), dw.numpy().ravel())[0, 1]
    assert corr > 0.8, corr


def test_gru_fit_runs_and_improves():
    sim = simulate_cohort(Reinforce(), n_animals=6, n_trials=150, params={"alpha": [0.2, 0.2]}, seed=2)
    cohort = sim.tensors()
    res = fit_rollout(cohort, GRURule(2, hidden=(8,), gru_hidden=4, seed=0),
                      config=RolloutConfig(epochs=6, lr=0.01, tbptt=50, init_weights="shared"),
                      validation=cohort.select([0, 1]), seed=0)
    assert res.init_weights.shape == (6, 2) and torch.equal(res.init_weights[0], res.init_weights[5])
    assert len(res.val_loglik) == 6 and res.losses[-1] < res.losses[0]
    assert res.n_updates == 6 * 3


def test_patience_counts_from_the_end_of_the_warmup(reinforce_sim, monkeypatch):
    # Every evaluation after the first scores lower; the warm-up's 6 must not spend the patience of 2.
    scores = iter(-float(i) for i in range(100))
    monkeypatch.setattr(rollout_fit, "predict_heldout", lambda *a, **k: SimpleNamespace(loglik_per_trial=next(scores)))
    cohort = reinforce_sim.tensors().select([0, 1])
    config = RolloutConfig(epochs=20, optimizer="lbfgs", lbfgs_iter=2, warmup_epochs=6, patience=2)
    res = fit_rollout(cohort, Reinforce(), config=config, validation=cohort, seed=0)
    assert res.n_steps == 8 and res.stop_reason.startswith("early stop")
    first = fit_rollout(cohort, Reinforce(), config=replace(config, epochs=1, patience=None), seed=0)
    torch.testing.assert_close(res.params["alpha"], first.params["alpha"], rtol=0, atol=0)  # the best state


def test_validation_time_is_left_out_of_the_training_clock(reinforce_sim, monkeypatch):
    def slow_predict(*args, **kwargs):
        time.sleep(0.3)
        return predict_heldout(*args, **kwargs)

    monkeypatch.setattr(rollout_fit, "predict_heldout", slow_predict)
    cohort = reinforce_sim.tensors().select([0, 1])
    res = fit_rollout(cohort, Reinforce(), config=RolloutConfig(epochs=4), validation=cohort, seed=0)
    assert len(res.val_train_s) == 4 and (np.diff(res.val_train_s) > 0).all()
    assert res.val_train_s[-1] < 0.9 <= 1.2 <= res.elapsed_s  # three earlier validations would add 0.9 s


def test_monitor_animals_are_scored_but_never_select_the_state(reinforce_sim):
    cohort = reinforce_sim.tensors()
    train, validation, test = cohort.select([0, 1, 2]), cohort.select([3]), cohort.select([4, 5])
    config = RolloutConfig(epochs=12, lr=0.3, init_lr=0.1, tbptt=100, patience=2)  # overshooting: stops early
    alone = fit_rollout(train, Reinforce(), config=config, validation=validation, seed=0)
    watched = fit_rollout(train, Reinforce(), config=config, validation=validation, monitor=test, seed=0)
    assert alone.monitor_loglik == () and watched.val_loglik == alone.val_loglik
    torch.testing.assert_close(watched.params["alpha"], alone.params["alpha"], rtol=0, atol=0)
    assert len(watched.monitor_loglik) == len(watched.val_loglik) == watched.n_steps
    # The returned (best-validation) state scores on the monitor animals what was recorded at its evaluation.
    best = int(np.argmax(watched.val_loglik))
    kept = predict_heldout(test, watched.rule, watched.params, init_weights=watched.init_weights.mean(0))
    assert kept.loglik_per_trial == pytest.approx(watched.monitor_loglik[best], abs=1e-12)
    assert watched.monitor_loglik[best] != watched.monitor_loglik[-1]
    with pytest.raises(ValueError, match="monitor"):
        fit_rollout(train, Reinforce(), monitor=test)


def test_a_rollout_fit_as_a_fit_result_carries_its_trajectory(reinforce_sim):
    cohort = reinforce_sim.tensors().select([0, 1, 2])
    res = fit_rollout(cohort, Reinforce(), config=RolloutConfig(epochs=3, optimizer="lbfgs", lbfgs_iter=3), seed=0)
    weights, _, _ = rollout_trajectory(res.rule, res.params, cohort.features, cohort.choice, cohort.reward,
                                       cohort.observed, res.init_weights)
    out = rollout_to_result(res, cohort, name="reinforce")
    np.testing.assert_allclose(out.weights_mean, weights.detach().numpy(), rtol=0, atol=1e-12)
    assert (out.weights_sd == 0).all() and out.elbo == pytest.approx(float(res.train_loglik.sum()))


class _Exploding(LearningRule):
    def drift(self, params, w, x, y, r, context):
        return torch.full_like(w, float("nan"))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_nan_loss_names_epoch(reinforce_sim, optimizer):
    cohort = reinforce_sim.tensors()
    with pytest.raises(FloatingPointError, match="epoch 0"):
        fit_rollout(cohort, _Exploding(), config=RolloutConfig(epochs=2, optimizer=optimizer))


def test_config_errors(reinforce_sim):
    cohort = reinforce_sim.tensors()
    with pytest.raises(ValueError, match="validation"):
        fit_rollout(cohort, Reinforce(), config=RolloutConfig(patience=2))
    held = holdout_sessions(cohort)
    with pytest.raises(ValueError, match="not both"):
        fit_rollout(cohort, Reinforce(), validation=cohort, holdout=held)
    with pytest.raises(ValueError, match="shape"):
        fit_rollout(cohort, Reinforce(), holdout=held[:, :10])
    with pytest.raises(ValueError, match="warmup_epochs"):
        fit_rollout(cohort, Reinforce(), config=RolloutConfig(warmup_epochs=5))

    class NotFittable(Reinforce):
        fittable: ClassVar[bool] = False

    with pytest.raises(ValueError, match="not fittable"):
        fit_rollout(cohort, NotFittable())
    with pytest.raises(ValueError, match="optimizer"):
        fit_rollout(cohort, Reinforce(), config=RolloutConfig(optimizer="sgd"))


def test_estimate_initial_weights_static_glm():
    sim = simulate_cohort(ZeroRule(), n_animals=3, n_trials=3000, init_sd=1.0, seed=5)
    est = estimate_initial_weights(sim.tensors(), n_trials=3000, l2=1e-3)
    np.testing.assert_allclose(est.numpy(), sim.weights[:, 0], atol=0.2)


def test_predict_heldout_protocols(reinforce_sim):
    cohort = reinforce_sim.tensors()
    params = {k: torch.as_tensor(v) for k, v in reinforce_sim.params.items()}
    w0 = torch.as_tensor(reinforce_sim.weights[:, 0])
    exact = predict_heldout(cohort, Reinforce(), params, init_weights=w0)
    ll = rollout_loglik(cohort, Reinforce(), params, w0)
    assert exact.loglik_per_trial == pytest.approx(float(ll.mean()))
    assert 0.5 < exact.accuracy <= 1.0
    fitted = predict_heldout(cohort, Reinforce(), params, init_weights=w0.mean(0), fit_trials=50, steps=50)
    assert not fitted.scored[:, :50].any() and fitted.scored[:, 50:].all()
    assert (fitted.init_weights - w0).abs().mean() < (w0.mean(0) - w0).abs().mean()
    mean_only = predict_heldout(cohort, Reinforce(), params, init_weights=w0.mean(0))
    assert exact.loglik_per_trial > mean_only.loglik_per_trial


class _Runaway(LearningRule):
    """Weights grow 5% per trial: a rollout that leaves every state a training animal visited."""

    def drift(self, params, w, x, y, r, context):
        return 0.05 * w


def test_predict_heldout_warns_when_rolled_out_weights_diverge(reinforce_sim, caplog):
    cohort = reinforce_sim.tensors()
    w0 = torch.as_tensor(reinforce_sim.weights[:, 0])
    params = {k: torch.as_tensor(v) for k, v in reinforce_sim.params.items()}
    predict_heldout(cohort, Reinforce(), params, init_weights=w0)
    assert "diverge" not in caplog.text  # the true rule: no warning
    runaway = predict_heldout(cohort, _Runaway(), {}, init_weights=w0)
    assert "scored choices of 12 animals have probability < 1e-08 under the rolled-out rule" in caplog.text
    assert runaway.loglik_per_trial < -1.0
    caplog.clear()
    predict_heldout(cohort, _Runaway(), {}, init_weights=w0, warn_diverged=False)  # fit_rollout's validation
    assert "diverge" not in caplog.text
