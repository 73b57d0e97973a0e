"""The rollout solved by Newton iterations equals the sequential rollout, in values and in gradients."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from learnrules.inference.rollout.parallel_rollout import affine_scan, parallel_trajectory
from learnrules.inference.rollout.rollout import predict_heldout, rollout_loglik, rollout_trajectory, trial_loglik
from learnrules.inference.rollout.rollout_fit import RolloutConfig, fit_rollout
from learnrules.models.neural import GRURule, MLPRule
from learnrules.other_rules import Reinforce, ReinforceBaseline, RewardGatedReinforce
from learnrules.synthetic import simulate_cohort


@pytest.fixture(scope="module")
def ragged():
    """Six REINFORCE animals x 700 trials; two end early (padding) and some trials have no choice."""
    torch.set_default_dtype(torch.float64)
    sim = simulate_cohort(Reinforce(), n_animals=6, n_trials=700, params={"alpha": [0.05, 0.05]}, seed=5)
    lengths = torch.tensor([700, 700, 451, 700, 700, 613])
    valid = torch.arange(700) < lengths[:, None]
    observed = torch.ones(6, 700, dtype=torch.bool)
    observed[1, 100:130] = False
    observed[4, 5:9] = False
    return replace(sim.tensors(), observed=observed, valid=valid, lengths=lengths)


def sequential_scan(a, b, z0):
    out, z = [], z0
    for t in range(a.shape[-3]):
        z = (a[..., t, :, :] @ z.unsqueeze(-1)).squeeze(-1) + b[..., t, :]
        out.append(z)
    return torch.stack(out, dim=-2)


@pytest.mark.parametrize("n_steps", [1, 2, 7, 64, 1001])
def test_affine_scan_solves_the_recurrence_with_its_gradient(n_steps):
    gen = torch.Generator().manual_seed(n_steps)
    a = torch.eye(3) + 0.3 * torch.randn(4, n_steps, 3, 3, generator=gen) / 3
    b = torch.randn(4, n_steps, 3, generator=gen)
    z0 = torch.randn(4, 3, generator=gen)
    inputs = [v.clone().requires_grad_(True) for v in (a, b, z0)]
    copies = [v.clone().requires_grad_(True) for v in (a, b, z0)]
    fast, slow = affine_scan(*inputs), sequential_scan(*copies)
    scale = float(slow.detach().abs().max())
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-11 * scale)
    weights = torch.randn(slow.shape, generator=gen)
    (fast * weights).sum().backward()
    (slow * weights).sum().backward()
    for mine, ref in zip(inputs, copies, strict=True):
        torch.testing.assert_close(mine.grad, ref.grad, rtol=1e-9, atol=1e-11 * float(ref.grad.abs().max()))


RULES = {  # built inside the test, where the default dtype is float64
    "mlp": lambda: (MLPRule(2, hidden=(16, 16), init_scale=0.05, seed=1), {}),
    "mlp-tanh": lambda: (MLPRule(2, hidden=(8,), activation="tanh", init_scale=0.05, seed=2), {}),
    "gru": lambda: (GRURule(2, hidden=(8,), gru_hidden=4, init_scale=0.05, seed=3, bptt_window=None), {}),
    "reinforce-baseline": lambda: (ReinforceBaseline(), {"alpha": torch.tensor([0.05, 0.08]),
                                                         "beta": torch.tensor(0.1)}),
    "reward-gated": lambda: (RewardGatedReinforce(), {"alpha0": torch.tensor([0.02, 0.02]), "beta": torch.tensor(0.5),
                                                      "alpha1": torch.tensor([0.1, 0.1]), "eta": torch.tensor(0.05)}),
}


def _loss_and_gradients(rule, params, cohort, w0, solve):
    """NLL of the rollout and its gradient with respect to the rule and the initial weights."""
    network = getattr(rule, "network", None)
    leaves = list(params.values()) + (list(network.parameters()) if network is not None else []) + [w0]
    for leaf in leaves:
        leaf.grad = None
    mask = cohort.observed & cohort.valid
    weights = solve(mask)
    nll = -(trial_loglik(weights, cohort.features, cohort.choice) * mask).sum()
    nll.backward()
    return weights.detach(), float(nll.detach()), [leaf.grad.clone() for leaf in leaves]


def truncated_rollout(rule, params, c, mask, w0, truncate):
    """The sequential rollout run in chunks of ``truncate`` trials, detached between them."""
    if truncate is None:
        return rollout_trajectory(rule, params, c.features, c.choice, c.reward, mask, w0)[0]
    w, context, parts = w0, None, []
    for start in range(0, c.features.shape[1], truncate):
        sl = slice(start, start + truncate)
        weights, w, context = rollout_trajectory(rule, params, c.features[:, sl], c.choice[:, sl], c.reward[:, sl],
                                                 mask[:, sl], w, context)
        parts.append(weights)
        w, context = w.detach(), context.detach()
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("truncate", [None, 64])
@pytest.mark.parametrize("name", RULES)
def test_parallel_rollout_equals_the_sequential_one_in_value_and_gradient(ragged, name, truncate):
    c, (rule, params) = ragged, RULES[name]()
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    w0 = torch.tensor([[0.2, -0.3]] * c.n_animals, requires_grad=True)

    def sequential(mask):
        return truncated_rollout(rule, params, c, mask, w0, truncate)

    solved = {}

    def parallel(mask):
        solved["it"] = parallel_trajectory(rule, params, c.features, c.choice, c.reward, mask, w0, truncate=truncate)
        return solved["it"].weights

    ref_w, ref_nll, ref_grads = _loss_and_gradients(rule, params, c, w0, sequential)
    w, nll, grads = _loss_and_gradients(rule, params, c, w0, parallel)
    assert solved["it"].iterations > 0  # solved by Newton, not by the sequential fallback
    assert ref_w.abs().max() > 0.5  # the weights did move: a trajectory, not a constant
    torch.testing.assert_close(w, ref_w, rtol=0, atol=1e-9)
    assert nll == pytest.approx(ref_nll, rel=1e-11)
    for g, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-7, atol=1e-9 * float(ref.abs().max()) + 1e-12)


def test_a_guess_at_the_solution_is_checked_and_returned_in_one_linearization(ragged):
    c, rule = ragged, MLPRule(2, hidden=(16, 16), init_scale=0.05, seed=1)
    mask, w0 = c.observed & c.valid, torch.zeros(c.n_animals, 2)
    with torch.no_grad():
        cold = parallel_trajectory(rule, {}, c.features, c.choice, c.reward, mask, w0)
        warm = parallel_trajectory(rule, {}, c.features, c.choice, c.reward, mask, w0, guess=cold.weights)
    assert cold.iterations > 2 and warm.iterations == 1
    torch.testing.assert_close(warm.weights, cold.weights, rtol=0, atol=1e-12)


def test_a_solve_that_does_not_converge_falls_back_to_the_sequential_rollout(ragged):
    c, rule = ragged, MLPRule(2, hidden=(16, 16), init_scale=0.05, seed=1)
    mask, w0 = c.observed & c.valid, torch.zeros(c.n_animals, 2)
    with torch.no_grad():
        out = parallel_trajectory(rule, {}, c.features, c.choice, c.reward, mask, w0, max_iter=1)
        ref = rollout_trajectory(rule, {}, c.features, c.choice, c.reward, mask, w0)
    assert out.iterations == 0
    assert torch.equal(out.weights, ref[0]) and torch.equal(out.w_next, ref[1])


def test_lbfgs_takes_the_same_path_with_either_solver(ragged):
    fits = {solver: fit_rollout(ragged, MLPRule(2, hidden=(8, 8), init_scale=0.02, seed=4), seed=0,
                                config=RolloutConfig(epochs=4, optimizer="lbfgs", lbfgs_iter=5, solver=solver))
            for solver in ("sequential", "parallel")}
    seq, par = fits["sequential"], fits["parallel"]
    assert seq.losses[-1] < seq.losses[0]
    np.testing.assert_allclose(par.losses, seq.losses, rtol=1e-9)
    torch.testing.assert_close(par.init_weights, seq.init_weights, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="solver"):
        fit_rollout(ragged, Reinforce(), config=RolloutConfig(optimizer="lbfgs", solver="newton"))


def test_adam_on_exact_or_truncated_gradients_takes_the_same_path_with_either_solver(ragged):
    def run(**options):
        config = RolloutConfig(epochs=3, lr=0.01, batch_size=2, **options)
        return fit_rollout(ragged, MLPRule(2, hidden=(8, 8), init_scale=0.02, seed=4), config=config, seed=0)

    seq, par = run(tbptt=None, solver="sequential"), run(tbptt=None, solver="parallel")
    np.testing.assert_allclose(par.losses, seq.losses, rtol=1e-10)
    torch.testing.assert_close(par.init_weights, seq.init_weights, rtol=1e-8, atol=1e-10)
    truncated = {solver: run(tbptt=50, update="sequence", solver=solver) for solver in ("sequential", "parallel")}
    np.testing.assert_allclose(truncated["parallel"].losses, truncated["sequential"].losses, rtol=1e-10)
    assert abs(truncated["sequential"].losses[-1] - seq.losses[-1]) > 1e-6  # truncation does change the path


@pytest.mark.parametrize("name", ["mlp", "gru", "reward-gated"])
def test_scores_solved_in_parallel_equal_the_sequential_ones(ragged, name):
    c, (rule, params) = ragged, RULES[name]()
    w0 = torch.stack([torch.linspace(-0.3, 0.3, c.n_animals), torch.linspace(0.4, -0.2, c.n_animals)], dim=1)
    reference = rollout_loglik(c, rule, params, w0, solver="sequential", chunk=128)
    for max_solve in (200_000, 1_500):  # all animals in one solve, or two per solve (three solves)
        parallel = rollout_loglik(c, rule, params, w0, solver="parallel", max_solve=max_solve)
        torch.testing.assert_close(parallel, reference, rtol=0, atol=1e-10)
    assert (reference[~(c.observed & c.valid)] == 0).all() and (reference[c.observed & c.valid] < 0).all()
    held = predict_heldout(c, rule, params, init_weights=w0, solver="parallel", warn_diverged=False)
    assert held.loglik_per_trial == pytest.approx(
        predict_heldout(c, rule, params, init_weights=w0, solver="sequential").loglik_per_trial, abs=1e-12)
    with pytest.raises(ValueError, match="solver"):
        rollout_loglik(c, rule, params, w0, solver="scan")
    for solver in ("parallel", "sequential"):  # no animals, or no trials: empty scores of the right shape
        assert rollout_loglik(c.select([]), rule, params, w0[:0], solver=solver).shape == (0, c.features.shape[1])
        none = c.select(slice(0, 2))
        none = type(none)(*(getattr(none, f)[:, :0] for f in ("features", "choice", "reward", "observed", "valid",
                                                              "session_start")), none.lengths * 0,
                          none.feature_names, none.subjects)
        assert rollout_loglik(none, rule, params, w0[:2], solver=solver).shape == (2, 0)
