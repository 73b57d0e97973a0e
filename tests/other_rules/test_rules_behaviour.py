"""Behavioural properties of the rules: direction of updates, rates, convergence, decay, carried residuals."""

import pytest
import torch

from learnrules.other_rules import (
    AsymmetricReinforce,
    CompressedReinforce,
    DeltaRule,
    EligibilityTrace,
    Reinforce,
    ReinforceBaseline,
    RewardGatedReinforce,
    policy_score,
)


def random_states(n=200, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 2
    x = torch.cat([torch.ones(n, 1), torch.rand(n, k - 1, generator=g) * 2 - 1], dim=1)
    return w, x


@pytest.mark.parametrize("rule", [Reinforce(), ReinforceBaseline(), AsymmetricReinforce()])
def test_reward_raises_chosen_side_probability(rule):
    w, x = random_states()
    params = rule.default_params(3)
    n = w.shape[0]
    for y in (0.0, 1.0):
        yy, rr = torch.full((n,), y), torch.ones(n)
        dw, _ = rule.step(params, rule.init_context(params, (n,), 3), w, x, yy, rr)
        before = torch.sigmoid((w * x).sum(-1))
        after = torch.sigmoid(((w + dw) * x).sum(-1))
        chosen_gain = (after - before) if y == 1 else (before - after)
        assert (chosen_gain > 0).all()


def test_baseline_omission_lowers_chosen_side_probability():
    rule = ReinforceBaseline()
    w, x = random_states()
    n = w.shape[0]
    dw = rule.drift(rule.default_params(3), w, x, torch.ones(n), torch.zeros(n), torch.zeros(n, 0))
    assert ((((w + dw) * x).sum(-1) - (w * x).sum(-1)) < 0).all()


def test_asymmetric_rates_scale_moves():
    rule = AsymmetricReinforce()
    params = AsymmetricReinforce.from_rates(torch.full((3,), 0.2), torch.full((3,), 0.05))
    w, x = random_states()
    n = w.shape[0]
    y = torch.ones(n)
    after_reward = rule.drift(params, w, x, y, torch.ones(n), torch.zeros(n, 0))
    after_omission = rule.drift(params, w, x, y, torch.zeros(n), torch.zeros(n, 0))
    assert (after_reward.norm(dim=-1) > after_omission.norm(dim=-1)).all()
    torch.testing.assert_close(after_reward, -4.0 * after_omission)


def test_delta_rule_values_converge_to_reward_probabilities():
    """Two stimuli (one-hot features), forced random choices, per-stimulus reward probabilities per side."""
    rule = DeltaRule()
    params = {"alpha": torch.full((2,), 0.005), "beta": torch.tensor(1.0)}
    g = torch.Generator().manual_seed(1)
    p_right = torch.tensor([0.9, 0.2])   # P(reward | right) for stimulus A, B
    p_left = torch.tensor([0.3, 0.6])
    n = 20_000
    stim = torch.randint(0, 2, (n,), generator=g)
    x_all = torch.nn.functional.one_hot(stim, 2).to(torch.float64)
    y_all = torch.randint(0, 2, (n,), generator=g).to(torch.float64)
    u = torch.rand(n, generator=g)
    r_all = (u < torch.where(y_all == 1, p_right[stim], p_left[stim])).to(torch.float64)
    w = torch.zeros(2)
    trace = []
    for t in range(n):
        dw, _ = rule.step(params, torch.zeros(0), w, x_all[t], y_all[t], r_all[t])
        w = w + dw
        trace.append(w)
    w_late = torch.stack(trace[-8000:]).mean(0)
    q_right, q_left = DeltaRule.action_values(w_late, torch.eye(2), 1.0)
    torch.testing.assert_close(q_right - q_left, p_right - p_left, atol=0.05, rtol=0)


def test_eligibility_trace_decays_at_lambda():
    rule = EligibilityTrace()
    lam = 0.7
    params = {"alpha": torch.full((2,), 0.1), "lam": torch.tensor(lam), "baseline": torch.tensor(0.5)}
    x0 = torch.tensor([1.0, 0.5])
    k_max = 8
    x = torch.cat([x0[None], torch.zeros(k_max, 2)])[None]   # one (features x choice) event, then silence
    y = torch.ones(1, k_max + 1)
    r = torch.ones(1, k_max + 1)
    traces = rule.contexts(params, x, y, r)[0]
    for k in range(k_max + 1):
        torch.testing.assert_close(traces[k], lam ** k * x0)
    drift = rule.drift(params, torch.zeros(k_max + 1, 2), x[0], y[0], r[0], traces)
    torch.testing.assert_close(drift[1:] / drift[:-1], torch.full((k_max, 2), lam))


def test_reward_gated_rate_grows_after_rewards():
    rule = RewardGatedReinforce()
    params = rule.default_params(2)
    w, x = torch.tensor([0.2, 1.0]), torch.tensor([1.0, 0.5])
    state = rule.init_context(params, (), 2)
    sizes, rates = [], []
    for _ in range(30):
        dw, state = rule.step(params, state, w, x, torch.tensor(1.0), torch.tensor(1.0))
        sizes.append(dw.norm())
        rates.append(state.item())
    assert all(b > a for a, b in zip(sizes, sizes[1:], strict=False))
    assert rates[-1] > 0.75
    for _ in range(30):
        _, state = rule.step(params, state, w, x, torch.tensor(1.0), torch.tensor(0.0))
    dw_after_losses, _ = rule.step(params, state, w, x, torch.tensor(1.0), torch.tensor(1.0))
    assert dw_after_losses.norm() < sizes[0]


@pytest.mark.parametrize("mode", ["sign", "topk"])
def test_compressed_error_feedback(mode):
    rule = CompressedReinforce(mode=mode, k=1)
    params = {"alpha": torch.tensor([0.05, 0.1, 0.02]), "beta": torch.tensor(0.5)}
    g = torch.Generator().manual_seed(3)
    w = torch.zeros(3)
    state = rule.init_context(params, (), 3)
    full_sum = torch.zeros(3)
    for _ in range(300):
        x = torch.cat([torch.ones(1), torch.rand(2, generator=g) * 2 - 1])
        y = (torch.rand((), generator=g) < 0.5).to(torch.float64)
        r = (torch.rand((), generator=g) < 0.6).to(torch.float64)
        full = params["alpha"] * (r - 0.5) * policy_score(w, x, y)
        dw, new_state = rule.step(params, state, w, x, y, r)
        if mode == "sign":
            assert all(abs(d) in (0.0, a) for d, a in zip(dw.tolist(), params["alpha"].tolist(), strict=True))
        else:
            assert int((dw != 0).sum()) <= 1
        torch.testing.assert_close(new_state, state + full - dw)   # the residual carries over
        full_sum = full_sum + full
        state, w = new_state, w + dw
    torch.testing.assert_close(w + state, full_sum)   # virtual weights = full-precision steps
    assert state.abs().max() > 0


def test_compressed_is_not_fittable_and_refuses_data_contexts():
    rule = CompressedReinforce()
    assert not rule.fittable and not rule.markov
    with pytest.raises(NotImplementedError, match="depends on the weights"):
        rule.contexts(rule.default_params(2), torch.zeros(1, 3, 2), torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="mode"):
        CompressedReinforce(mode="round")
