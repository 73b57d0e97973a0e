import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import chi2, norm

from learnrules.inference.result import FitResult
from learnrules.inference.variational.banded import BandedGaussianTrajectory
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.inference.variational.laplace import _likelihood_ratio_bounds
from learnrules.inference.variational.optimize import Objective, StepGuard
from learnrules.inference.variational.theta import Theta
from learnrules.inference.variational.vi import update_posterior
from learnrules.models.dynamics import DynamicsConfig, drift_sequence, transition_sd
from learnrules.other_rules import AsymmetricReinforce, ReinforceBaseline

import fitting_helpers as helpers


def log_joint(rule, hyper, data, w):
    """Dense log p(y, w) of one batch of trajectories w (..., A, T, K), straight from the model equations."""
    x = data.features
    z = (w * x).sum(-1)
    live = data.observed & data.valid
    lik = torch.where(live, data.choice * z - torch.nn.functional.softplus(z), torch.zeros_like(z)).sum(-1)
    f = drift_sequence(rule, hyper.params, data, w) if rule is not None else torch.zeros_like(w)
    sd = transition_sd(hyper.sigma, hyper.sigma_session, data.session_start)
    step = torch.distributions.Normal(w[..., :-1, :] + f[..., :-1, :], sd).log_prob(w[..., 1:, :])
    dyn = torch.where(data.valid[:, 1:].unsqueeze(-1), step, torch.zeros_like(step)).sum((-1, -2))
    init = torch.distributions.Normal(hyper.init_mean, hyper.sigma_init).log_prob(w[..., 0, :]).sum(-1)
    return lik + dyn + init


def small_cohort(rule=None, seed=0, n_trials=12, n_animals=2):
    params = {"alpha": torch.tensor([0.3, 0.2]), "beta": torch.tensor(0.4)}
    return helpers.simulate(rule, params, n_animals=n_animals, n_trials=n_trials, sigma=0.2, seed=seed)[0]


def test_elbo_is_below_the_importance_sampled_log_evidence():
    data = small_cohort(n_trials=8)
    config = FitConfig(dynamics=DynamicsConfig(sigma=0.3, sigma_init=1.0))
    hyper = Theta(None, data, config).hyper().detach()
    post = update_posterior(None, hyper, data)
    q = BandedGaussianTrajectory(post.mean, _precision_of(post))
    draws = q.rsample((200000,))
    log_w = log_joint(None, hyper, data, draws) - q.log_prob(draws)
    log_z = torch.logsumexp(log_w, 0) - math.log(draws.shape[0])
    assert torch.all(post.elbo <= log_z + 1e-3)
    assert torch.all(post.elbo >= log_z - 0.5)  # and the bound is tight on a small problem
    assert torch.allclose(log_w.mean(0), post.elbo, atol=0.05)  # the ELBO is E_q[log p - log q]


def _precision_of(post):
    """Rebuild q's block-tridiagonal precision densely from its selected inverse (Markov covariance completion)."""
    from learnrules.inference.variational.banded import BlockTridiagonal

    a, t, k = post.mean.shape
    dense = torch.zeros(a, t * k, t * k)
    for i in range(t):
        dense[:, i * k:(i + 1) * k, i * k:(i + 1) * k] = post.cov[:, i]
        if i + 1 < t:
            dense[:, (i + 1) * k:(i + 2) * k, i * k:(i + 1) * k] = post.cross[:, i]
            dense[:, i * k:(i + 1) * k, (i + 1) * k:(i + 2) * k] = post.cross[:, i].mT
    # The covariance of a Markov chain is determined by its tridiagonal blocks; fill the rest by recursion.
    for gap in range(2, t):
        for i in range(t - gap):
            c_next = dense[:, (i + gap) * k:(i + gap + 1) * k, (i + gap - 1) * k:(i + gap) * k]
            c_prev = dense[:, (i + gap - 1) * k:(i + gap) * k, (i + gap - 1) * k:(i + gap) * k]
            c_far = dense[:, (i + gap - 1) * k:(i + gap) * k, i * k:(i + 1) * k]
            block = c_next @ torch.linalg.solve(c_prev, c_far)
            dense[:, (i + gap) * k:(i + gap + 1) * k, i * k:(i + 1) * k] = block
            dense[:, i * k:(i + 1) * k, (i + gap) * k:(i + gap + 1) * k] = block.mT
    prec = torch.linalg.inv(dense)
    diag = torch.stack([prec[:, i * k:(i + 1) * k, i * k:(i + 1) * k] for i in range(t)], 1)
    lower = torch.stack([prec[:, (i + 1) * k:(i + 2) * k, i * k:(i + 1) * k] for i in range(t - 1)], 1)
    return BlockTridiagonal(diag, lower)


@pytest.mark.parametrize("rule", [None, ReinforceBaseline()])
def test_laplace_mode_matches_dense_newton(rule):
    data = small_cohort(rule, n_trials=10)
    config = FitConfig(dynamics=DynamicsConfig(sigma=0.3, sigma_init=2.0))
    hyper = Theta(rule, data, config).hyper().detach()
    mode = update_posterior(rule, hyper, data, n_points=1, tol=1e-14).mean  # 1 node: E[g(z)] = g(mean)
    w = torch.zeros_like(data.features).requires_grad_(True)
    for _ in range(30):  # dense Newton on the log joint
        value = log_joint(rule, hyper, data, w).sum()
        grad = torch.autograd.grad(value, w, create_graph=True)[0].reshape(-1)
        hess = torch.stack([torch.autograd.grad(g, w, retain_graph=True)[0].reshape(-1) for g in grad])
        w = (w.detach().reshape(-1) - torch.linalg.solve(hess, grad.detach())).reshape(w.shape).requires_grad_(True)
    if rule is None:
        assert torch.allclose(mode, w.detach(), atol=1e-7)
    else:  # the drift's Jacobian enters E_q of the dynamics: the VI mean is near, not at, the MAP
        assert torch.allclose(mode, w.detach(), atol=1e-2)


def test_posterior_mean_is_a_stationary_point_of_the_elbo_for_a_nonlinear_rule():
    from learnrules.inference.variational.vi import elbo, expected_likelihood, linearize

    rule = ReinforceBaseline()
    data = small_cohort(rule, n_trials=30)
    hyper = Theta(rule, data, FitConfig(dynamics=DynamicsConfig(sigma=0.3, sigma_init=2.0))).hyper().detach()
    post = update_posterior(rule, hyper, data, tol=1e-15)
    m = post.mean.clone().requires_grad_(True)
    lik = expected_likelihood(data, m, post.cov)
    value = elbo(hyper, data, m, post.cov, post.cross, post.logdet, linearize(rule, hyper, data, m), likelihood=lik)
    grad = torch.autograd.grad(value.sum(), m)[0]
    assert grad.abs().max() < 1e-5


def test_weights_match_psytrack_map_on_a_subset():
    from psytrack.getMAP import getMAP

    data, raw = helpers.rat_w053(2000)
    sigma = 2.0 ** -4
    hyper = {"sigInit": 2.0 ** 4, "sigma": [sigma] * 3, "sigDay": None}
    w_mode, _, log_evd, _ = getMAP(raw, hyper, {"bias": 1, "s1": 1, "s2": 1})
    config = FitConfig(dynamics=DynamicsConfig(sigma=sigma), learn_sigma=False)
    res = fit(data, features=("bias", "s1", "s2"), config=config)
    ours = res.weights_mean[0].T
    for i in range(3):
        assert np.corrcoef(ours[i], w_mode[i])[0, 1] >= 0.99
    assert abs(res.elbo - log_evd) <= 0.005 * abs(log_evd)
    assert res.elbo_trace.shape == (1,)


def test_nan_in_the_rule_stops_the_fit_naming_step_and_cause():
    data = small_cohort(n_trials=20)
    with pytest.raises(FloatingPointError, match=r"step \d+.*drift"):
        fit(data, rule=helpers.NaNRule())


@pytest.mark.parametrize(("log_sigma", "cause"), [(math.inf, "sigma exploded"), (-20.0, "sigma collapsed toward 0"),
                                                  (-3.0, "learning rate")])
def test_the_diagnosis_names_the_direction_sigma_went(log_sigma, cause):
    data = small_cohort(n_trials=20)
    theta = Theta(None, data, FitConfig())
    objective = Objective(None, theta, data, FitConfig())
    with torch.no_grad():
        theta.log_sigma[0] = log_sigma
    assert cause in objective.diagnose()


def test_a_line_search_that_leaves_the_valid_region_restarts_from_the_last_accepted_point(monkeypatch, caplog):
    data = small_cohort(ReinforceBaseline(), n_trials=200)
    config = FitConfig(max_steps=30)
    clean = fit(data, rule=ReinforceBaseline(), config=config)
    calls, original = [0], Objective.__call__

    def fails_once(self):
        calls[0] += 1
        if calls[0] == 6:  # inside the third or so L-BFGS step, after accepted points exist
            raise FloatingPointError("injected: a line-search point where the posterior update fails")
        return original(self)

    monkeypatch.setattr(Objective, "__call__", fails_once)
    with caplog.at_level("WARNING", logger="learnrules.inference.variational.fit"):
        res = fit(data, rule=ReinforceBaseline(), config=config)
    assert "L-BFGS restarted from the last accepted point (1 of 3" in caplog.text
    assert res.elbo == pytest.approx(clean.elbo, abs=1e-3)
    np.testing.assert_allclose(res.params["alpha"], clean.params["alpha"], rtol=1e-2)


def test_result_tables_and_save_load_roundtrip(tmp_path):
    data = small_cohort(ReinforceBaseline(), n_trials=60)
    ragged = type(data)(data.features, data.choice, data.reward, data.observed,
                        data.valid & (torch.arange(60) < torch.tensor([[60], [45]])), data.session_start,
                        torch.tensor([60, 45]), data.feature_names, data.subjects)
    res = fit(ragged, rule=ReinforceBaseline(), config=FitConfig(max_steps=3))
    frame = res.weights
    assert list(frame.columns) == ["subject", "trial", "session", "feature", "mean", "sd", "lower", "upper"]
    assert len(frame) == (60 + 45) * 2 and frame.attrs["band_level"] == 0.9
    assert frame.groupby("subject")["trial"].max().to_dict() == {"a0": 59, "a1": 44}
    assert np.all(frame["lower"] < frame["mean"]) and np.all(frame["mean"] < frame["upper"])
    params = res.parameters
    assert list(params.columns) == ["parameter", "feature", "mean", "sd", "lower", "upper", "clamped"]
    assert set(params["parameter"]) == {"sigma", "alpha", "beta"}
    assert np.all(params["lower"] <= params["mean"]) and np.all(params["mean"] <= params["upper"])
    path = res.save(tmp_path / "fit.npz")
    back = FitResult.load(path)
    assert back.rule_name == "ReinforceBaseline" and back.subjects == ("a0", "a1")
    np.testing.assert_array_equal(back.weights_mean, res.weights_mean)
    np.testing.assert_array_equal(back.params["alpha"], res.params["alpha"])
    pd.testing.assert_frame_equal(back.parameters, res.parameters)
    assert back.n_steps == res.n_steps and back.elbo == res.elbo


def test_missing_choices_have_no_likelihood_and_no_update():
    data = small_cohort(n_trials=30)
    observed = data.observed.clone()
    observed[:, 10:20] = False
    flipped = data.choice.clone()
    flipped[:, 10:20] = 1 - flipped[:, 10:20]
    a = type(data)(data.features, data.choice, data.reward, observed, data.valid, data.session_start,
                   data.lengths, data.feature_names, data.subjects)
    b = type(data)(data.features, flipped, data.reward, observed, data.valid, data.session_start,
                   data.lengths, data.feature_names, data.subjects)
    config = FitConfig(learn_sigma=False)
    ra, rb = fit(a, config=config), fit(b, config=config)
    np.testing.assert_allclose(ra.weights_mean, rb.weights_mean, atol=1e-8)
    full = fit(data, config=config)
    assert np.all(ra.weights_sd[:, 15] > full.weights_sd[:, 15])  # no data there: wider band


def test_chunked_posterior_update_matches_all_at_once():
    rule = ReinforceBaseline()
    data = small_cohort(rule, n_trials=40, n_animals=3)
    hyper = Theta(rule, data, FitConfig()).hyper().detach()
    whole = update_posterior(rule, hyper, data, tol=1e-12)
    parts = update_posterior(rule, hyper, data, tol=1e-12, chunk=2)
    assert torch.allclose(whole.mean, parts.mean, atol=1e-6)
    assert torch.allclose(whole.cov, parts.cov, atol=1e-6)
    assert torch.allclose(whole.elbo, parts.elbo, atol=1e-6)


def test_small_parametric_recovery_of_the_stimulus_learning_rate():
    rule = ReinforceBaseline()
    truth = {"alpha": torch.tensor([0.05, 0.1]), "beta": torch.tensor(0.3)}
    data, _ = helpers.simulate(rule, truth, n_animals=2, n_trials=1000, sigma=0.02, seed=5)
    res = fit(data, rule=rule, config=FitConfig(dynamics=DynamicsConfig(sigma=0.05)))
    table = res.parameters.set_index(["parameter", "feature"])
    row = table.loc[("alpha", "stimulus")]
    assert row["lower"] <= 0.1 <= row["upper"]
    assert abs(row["mean"] - 0.1) / 0.1 < 0.4
    assert res.converged
    # sigma[stimulus] sits near 0 (flat likelihood); an inexact Hessian also smeared its clamp over alpha and beta
    assert table.index[table["clamped"]].tolist() == [("sigma", "stimulus")]


def test_a_noise_sd_the_data_do_not_inform_is_flagged_as_clamped():
    # The bias weight never moves (sigma 0): the likelihood is flat towards sigma = 0, the Laplace curvature
    # along log sigma[bias] is clamped, and that row gets a likelihood-ratio interval reaching down to 0.
    data, _ = helpers.simulate(None, {}, n_animals=2, n_trials=1000, sigma=torch.tensor([0.0, 0.1]), seed=1)
    res = fit(data)
    table = res.parameters.set_index("feature")
    bias = table.loc["bias"]
    assert bias["clamped"] and bias["mean"] < 0.01 and bias["lower"] == 0.0 and bias["mean"] < bias["upper"] < 0.1
    assert not table.loc["stimulus", "clamped"]
    assert table.loc["stimulus", "lower"] <= 0.1 <= table.loc["stimulus", "upper"]


def test_likelihood_ratio_bounds_match_a_gaussian_and_stay_open_where_the_loss_is_flat():
    sd, rise = 0.7, chi2.ppf(0.9, 1) / 2
    gaussian = lambda d: (0.5 * (d / sd) ** 2, True)  # noqa: E731
    lower, upper = _likelihood_ratio_bounds(gaussian, rise, n_bisect=30)
    assert lower == pytest.approx(-norm.ppf(0.95) * sd, abs=1e-6)
    assert upper == pytest.approx(norm.ppf(0.95) * sd, abs=1e-6)
    half_flat = lambda d: (max(d, 0.0) ** 2, True)  # noqa: E731
    lower, upper = _likelihood_ratio_bounds(half_flat, rise, n_bisect=30)
    assert lower == -math.inf and upper == pytest.approx(math.sqrt(rise), abs=1e-6)
    # an inexact loss (q unconverged) that has risen decides nothing: that end stays open
    inexact_below = lambda d: (0.5 * (d / sd) ** 2, d >= 0)  # noqa: E731
    lower, upper = _likelihood_ratio_bounds(inexact_below, rise, n_bisect=30)
    assert lower == -math.inf and upper == pytest.approx(norm.ppf(0.95) * sd, abs=1e-6)


def test_a_single_precision_cohort_is_fitted_in_double_precision():
    # float32 cannot factor the posterior precision once sigma is small (it carries 1 / sigma^2)
    data = small_cohort(n_trials=200)
    single = data.to(torch.float32)
    assert single.features.dtype == torch.float32 and data.features.dtype == torch.float64  # a copy
    config = FitConfig(param_posterior="none", max_steps=5)
    results = [fit(cohort, config=config, seed=0) for cohort in (data, single)]
    assert results[1].elbo == pytest.approx(results[0].elbo, rel=1e-6)
    assert results[1].weights_mean.dtype == np.float64
    assert single.features.dtype == torch.float32  # the caller's cohort is untouched


def test_selecting_animals_by_slice_gives_views_of_the_same_animals_as_by_index():
    data = small_cohort(n_trials=50, n_animals=4)
    by_slice, by_index = data.select(slice(1, 3)), data.select([1, 2])
    assert by_slice.subjects == by_index.subjects == data.subjects[1:3]
    for name in ("features", "choice", "reward", "observed", "valid", "session_start", "lengths"):
        assert torch.equal(getattr(by_slice, name), getattr(by_index, name))
    assert by_slice.features.data_ptr() == data.features[1].data_ptr()  # a view: chunks copy nothing


def test_asymmetric_rule_reports_its_rates_with_intervals_from_the_laplace_posterior():
    rule = AsymmetricReinforce()
    truth = rule.from_rates(torch.tensor([0.1, 0.2]), torch.tensor([0.05, 0.05]))
    data, _ = helpers.simulate(rule, truth, n_animals=2, n_trials=300, sigma=0.05, seed=2)
    res = fit(data, rule=rule, config=FitConfig(max_steps=40))
    table = res.parameters.set_index(["parameter", "feature"])
    for f in ("bias", "stimulus"):
        alpha, share = table.loc[("alpha", f), "mean"], table.loc[("omission_share", f), "mean"]
        plus, minus = table.loc[("alpha_plus", f)], table.loc[("alpha_minus", f)]
        assert plus["mean"] == pytest.approx(alpha * (1 - share)) and minus["mean"] == pytest.approx(alpha * share)
        # The derived intervals come from the same posterior: alpha_plus < alpha and a real spread.
        assert 0 < plus["lower"] < plus["mean"] < plus["upper"] < table.loc[("alpha", f), "upper"]
        assert plus["sd"] > 0 and minus["sd"] > 0


def test_fit_from_trials_is_double_precision_whatever_the_default_dtype():
    from learnrules.behavior import load_trials
    from learnrules.synthetic import simulate_cohort

    trials = load_trials(simulate_cohort(ReinforceBaseline(), n_animals=2, n_trials=300, seed=3).table)
    config = FitConfig(param_posterior="none", max_steps=5)
    reference = fit(trials, rule=ReinforceBaseline(), config=config, seed=0)
    torch.set_default_dtype(torch.float32)  # the autouse fixture restores float64 for the next test
    single = fit(trials, rule=ReinforceBaseline(), config=config, seed=0)
    assert single.weights_mean.dtype == np.float64
    assert single.elbo == pytest.approx(reference.elbo, rel=1e-9)


def guarded_leaf(size, post, max_drop=0.01, **options):
    """One tensor under Adam and a step guard; the objective stands in for Objective, Theta.restore is real."""
    leaf = torch.zeros(size, requires_grad=True)
    theta = SimpleNamespace(leaves=lambda: [leaf])
    theta.restore = lambda values: Theta.restore(theta, values)
    objective = SimpleNamespace(theta=theta, post=post)
    opt = torch.optim.Adam([leaf], lr=0.1)
    return leaf, objective, opt, StepGuard(objective, opt, max_drop=max_drop, **options)


def test_a_step_that_drops_the_elbo_is_undone_with_halved_step_sizes():
    leaf, objective, opt, guard = guarded_leaf(3, "posterior at 0")
    assert guard.keep([leaf.detach().clone()], -1000.0)
    leaf.sum().backward()
    opt.step()  # moves the point and fills Adam's moments
    objective.post = "posterior after the step"
    assert guard.keep([leaf.detach().clone()], -1009.0)  # a 0.9% fall is kept
    kept = leaf.detach().clone()
    opt.step()
    objective.post = "posterior in a bad region"
    assert not guard.keep([leaf.detach().clone()], -1030.0)  # 2.1% below the last kept point: undone
    assert torch.equal(leaf.detach(), kept) and objective.post == "posterior after the step"
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05) and not opt.state
    # The restored point is re-evaluated next, with a re-optimized posterior: its value is kept whatever it is
    # (judging it against the old value undid the same point 19,000 times in a rat fit).
    assert guard.keep([leaf.detach().clone()], -1015.0)
    assert guard.kept[2] == -1015.0 and opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_a_minibatch_step_is_judged_on_its_animals_against_their_last_update():
    leaf, objective, opt, guard = guarded_leaf(1, "first full pass", max_drop=0.05)
    assert guard.keep([leaf.detach().clone()], -20_000.0)
    # Scaled batch values jump between batches (30% here): only the batch's own change counts.
    objective.post = "after step 1"
    assert guard.keep([leaf.detach().clone()], -26_000.0, change=(-1300.0, -1290.0))
    objective.post = "after step 2"
    assert guard.keep([leaf.detach().clone()], -18_800.0, change=(-900.0, -940.0))  # a 4.4% fall is kept
    kept = leaf.detach().clone()
    with torch.no_grad():
        leaf.add_(1.0)
    objective.post = "after a bad step"
    assert not guard.keep([leaf.detach().clone()], -19_000.0, change=(-950.0, -1000.0))  # 5.3%: undone
    assert torch.equal(leaf.detach(), kept) and objective.post == "after step 2"
    assert guard.fall == (-950.0, -1000.0) and opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_the_step_guard_thresholds_are_validated():
    for name in ("max_elbo_drop", "max_batch_elbo_drop"):
        with pytest.raises(ValueError, match=name):
            FitConfig(**{name: -0.01})


def test_the_step_guard_stands_down_after_its_undos():
    leaf, _, _, guard = guarded_leaf(1, None, max_undos=2)
    verdicts = []
    for value in (-100.0, -200.0, -100.0, -200.0, -100.0, -200.0):  # a fall after every kept point
        verdicts.append(guard.keep([leaf.detach().clone()], value))
    assert verdicts == [True, False, True, False, True, True] and guard.undos == 2


def test_the_time_budget_stops_after_the_step_that_exceeds_it():
    data = small_cohort(n_trials=100)
    res = fit(data, config=FitConfig(param_posterior="none", time_budget_s=0.0, max_steps=50), seed=0)
    assert res.n_steps == 1 and not res.converged


def test_each_lbfgs_inner_solve_starts_from_the_best_point_evaluated_so_far(monkeypatch):
    # A line search's far-out trial points have posteriors that are poor starts near the current point.
    truth = {"alpha": torch.tensor([0.2, 0.2]), "beta": torch.tensor(0.4)}
    data, _ = helpers.simulate(ReinforceBaseline(), truth, n_animals=2, n_trials=300, sigma=0.01, seed=0)
    evaluated, original = [], Objective.__call__

    def recording(self):
        start = self.post
        loss = original(self)
        evaluated.append((start, float(loss.detach()), self.post))
        return loss

    monkeypatch.setattr(Objective, "__call__", recording)
    config = FitConfig(max_steps=10, param_posterior="none", dynamics=DynamicsConfig(sigma=0.05))
    fit(data, rule=ReinforceBaseline(), config=config)
    best, n_worse = (math.inf, None), 0
    for start, loss, post in evaluated:
        assert start is best[1]
        n_worse += loss > best[0]
        best = min(best, (loss, post), key=lambda b: b[0])
    assert n_worse >= 1  # the line search did try a worse point, so "last" and "best" differed


def test_the_collapsed_objective_gradient_matches_finite_differences_for_a_network_drift():
    # A network drift and wide posteriors (sigma 0.3): the inner solve must end at a stationary point of the
    # ELBO, or the envelope gradient in the network's parameters is wrong and L-BFGS line searches fail.
    from learnrules.models.hybrid import HybridRule
    from learnrules.models.neural import MLPRule

    data = small_cohort(ReinforceBaseline(), n_trials=150, n_animals=2, seed=3)
    rule = HybridRule(ReinforceBaseline(), MLPRule(2, hidden=(8,), activation="tanh", max_update=0.3, seed=1))
    with torch.no_grad():
        for p in rule.network.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.8)
    config = FitConfig(dynamics=DynamicsConfig(sigma=0.3, sigma_init=1.0), inner_max_iter=200, inner_tol=1e-14)
    theta = Theta(rule, data, config)
    objective = Objective(rule, theta, data, config)
    leaves = theta.leaves()
    loss = objective()
    grads = torch.autograd.grad(loss, leaves)
    direction = [torch.randn(p.shape, generator=torch.Generator().manual_seed(7 + i)) for i, p in enumerate(leaves)]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
    solved = objective.post

    def at(eps):
        with torch.no_grad():
            for p, d in zip(leaves, direction, strict=True):
                p.add_(eps * d)
            objective.post = solved
            value = float(objective())
            for p, d in zip(leaves, direction, strict=True):
                p.sub_(eps * d)
        return value

    eps = 1e-5
    numeric = (at(eps) - at(-eps)) / (2 * eps)
    assert numeric == pytest.approx(analytic, rel=1e-3, abs=1e-6)
