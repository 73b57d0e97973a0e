"""Drifts and contexts vectorize over (animals, trials); the registry and priors work for every rule."""

import pytest
import torch

from learnrules.models.dynamics import is_random_walk
from learnrules.other_rules import RULES, CompressedReinforce, exp_filter, make_rule

A, T, K = 3, 150, 3  # T > 64: crosses a chunk boundary of the context filter


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(A, T, K, generator=g)
    x = torch.cat([torch.ones(A, T, 1), torch.rand(A, T, K - 1, generator=g) * 2 - 1], -1)
    y = (torch.rand(A, T, generator=g) < 0.5).to(torch.float64)
    r = (torch.rand(A, T, generator=g) < 0.7).to(torch.float64)
    return w, x, y, r


def random_params(rule, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in rule.parameters.items():
        base = torch.distributions.biject_to(p.constraint).inv(torch.tensor(float(p.default)))
        unconstrained = base + 0.3 * torch.randn(p.shape(K), generator=g)
        out[name] = torch.distributions.biject_to(p.constraint)(unconstrained)
    return out


FITTABLE = [name for name, cls in RULES.items() if cls.fittable]


@pytest.mark.parametrize("name", FITTABLE)
def test_batched_drift_equals_loop(name):
    rule = make_rule(name)
    params = random_params(rule)
    w, x, y, r = batch()
    contexts = rule.contexts(params, x, y, r)
    assert contexts.shape[:2] == (A, T)
    batched = rule.drift(params, w, x, y, r, contexts)
    for a in range(A):
        c = rule.init_context(params, (), K)
        for t in range(T):
            c = rule.next_context(params, c, x[a, t], y[a, t], r[a, t])
            torch.testing.assert_close(contexts[a, t], c)
            torch.testing.assert_close(batched[a, t], rule.drift(params, w[a, t], x[a, t], y[a, t], r[a, t], c))


@pytest.mark.parametrize("name", FITTABLE)
def test_step_matches_contexts_then_drift(name):
    rule = make_rule(name)
    params = random_params(rule)
    w, x, y, r = batch()
    state = rule.init_context(params, (A,), K)
    contexts = rule.contexts(params, x, y, r)
    drift = rule.drift(params, w, x, y, r, contexts)
    for t in range(T):
        dw, state = rule.step(params, state, w[:, t], x[:, t], y[:, t], r[:, t])
        torch.testing.assert_close(dw, drift[:, t])


@pytest.mark.parametrize("mode", ["sign", "topk"])
def test_compressed_step_vectorizes_over_animals(mode):
    rule = CompressedReinforce(mode=mode)
    params = random_params(rule)
    w, x, y, r = batch()
    state = rule.init_context(params, (A,), K)
    singles = [rule.init_context(params, (), K) for _ in range(A)]
    for t in range(20):
        dw, state = rule.step(params, state, w[:, t], x[:, t], y[:, t], r[:, t])
        for a in range(A):
            dw_a, singles[a] = rule.step(params, singles[a], w[a, t], x[a, t], y[a, t], r[a, t])
            torch.testing.assert_close(dw[a], dw_a)
            torch.testing.assert_close(state[a], singles[a])


@pytest.mark.parametrize("decay_shape", [(), (2,)])
def test_exp_filter_matches_recursion_and_gradient(decay_shape):
    g = torch.Generator().manual_seed(4)
    u = torch.randn(2, 200, 2, generator=g)
    init = torch.randn(2, 2, generator=g)
    decay = (torch.rand(decay_shape, generator=g) * 0.5 + 0.4).requires_grad_(True)
    fast = exp_filter(u, decay, init)
    c, slow = init, []
    for t in range(200):
        c = decay * c + u[:, t]
        slow.append(c)
    slow = torch.stack(slow, 1)
    torch.testing.assert_close(fast, slow)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), decay)
    (g_slow,) = torch.autograd.grad(slow.square().sum(), decay)
    torch.testing.assert_close(g_fast, g_slow)


def test_drift_is_differentiable_in_parameters():
    for name in FITTABLE:
        rule = make_rule(name)
        params = {k: v.clone().requires_grad_(True) for k, v in random_params(rule).items()}
        if not params:
            continue
        w, x, y, r = batch()
        out = rule.drift(params, w, x, y, r, rule.contexts(params, x, y, r)).sum()
        grads = torch.autograd.grad(out, list(params.values()))
        assert all(torch.isfinite(gr).all() and gr.abs().sum() > 0 for gr in grads), name


def test_registry_and_priors():
    assert set(RULES) == {"zero", "reinforce", "reinforce-baseline", "asymmetric", "delta", "hebbian",
                          "eligibility", "reward-gated", "compressed"}
    with pytest.raises(ValueError, match="known rules: zero, reinforce"):
        make_rule("sarsa")
    for name in RULES:
        rule = make_rule(name)
        assert rule.__doc__ and len(rule.__doc__) > 100
        for pname, p in rule.parameters.items():
            draw = p.prior(K).sample()
            assert draw.shape == p.shape(K)
            assert p.constraint.check(draw).all(), (name, pname)
            assert p.constraint.check(torch.tensor(p.default)), (name, pname)
    assert make_rule("zero").parameters == {} and is_random_walk(make_rule("zero"))
    assert not is_random_walk(make_rule("reinforce"))
