"""Each rule's update on a hand-computed trial equals its formula."""

import math

import pytest
import torch

from learnrules.other_rules import (
    AsymmetricReinforce,
    CompressedReinforce,
    DeltaRule,
    EligibilityTrace,
    GlobalErrorHebbian,
    Reinforce,
    ReinforceBaseline,
    RewardGatedReinforce,
    ZeroRule,
)

F64 = torch.float64  # module constants are built before conftest sets the default dtype
W = torch.tensor([0.5, -1.0], dtype=F64)
X = torch.tensor([1.0, 0.8], dtype=F64)
# z = 0.5 * 1 - 1 * 0.8 = -0.3, p = sigmoid(-0.3)
P = 1.0 / (1.0 + math.exp(0.3))
ALPHA = torch.tensor([0.1, 0.2], dtype=F64)


def t(v):
    return torch.tensor(float(v))


def step(rule, params, y, r, w=W, x=X, state=None):
    if state is None:
        state = rule.init_context(params, (), x.shape[-1])
    return rule.step(params, state, w, x, t(y), t(r))


def test_sigmoid_by_hand():
    assert P == pytest.approx(0.425557483188341, abs=1e-12)


def test_reinforce():
    dw, _ = step(Reinforce(), {"alpha": ALPHA}, y=1, r=1)
    expected = [0.1 * 1 * (1 - P) * 1.0, 0.2 * 1 * (1 - P) * 0.8]
    assert dw.tolist() == pytest.approx(expected, abs=1e-12)
    assert dw.tolist() == pytest.approx([0.0574442517, 0.0919108027], abs=1e-9)
    dw0, _ = step(Reinforce(), {"alpha": ALPHA}, y=0, r=0)
    assert dw0.tolist() == [0.0, 0.0]  # no reward, no update


def test_reinforce_baseline():
    params = {"alpha": ALPHA, "beta": t(0.3)}
    dw, _ = step(ReinforceBaseline(), params, y=0, r=0)
    expected = [0.1 * (0 - 0.3) * (0 - P) * 1.0, 0.2 * (0 - 0.3) * (0 - P) * 0.8]
    assert dw.tolist() == pytest.approx(expected, abs=1e-12)
    dw, _ = step(ReinforceBaseline(), params, y=1, r=1)
    assert dw.tolist() == pytest.approx([0.1 * 0.7 * (1 - P), 0.2 * 0.7 * (1 - P) * 0.8], abs=1e-12)


def test_asymmetric_reinforce():
    params = AsymmetricReinforce.from_rates(ALPHA, torch.tensor([0.03, 0.05]))
    dw, _ = step(AsymmetricReinforce(), params, y=1, r=1)
    assert dw.tolist() == pytest.approx([0.1 * (1 - P), 0.2 * (1 - P) * 0.8], abs=1e-12)
    dw, _ = step(AsymmetricReinforce(), params, y=1, r=0)
    assert dw.tolist() == pytest.approx([-0.03 * (1 - P), -0.05 * (1 - P) * 0.8], abs=1e-12)


def test_asymmetric_reinforce_reports_the_rates_it_was_built_from():
    rates = AsymmetricReinforce().derived(AsymmetricReinforce.from_rates(ALPHA, torch.tensor([0.03, 0.05])))
    torch.testing.assert_close(rates["alpha_plus"], ALPHA)
    torch.testing.assert_close(rates["alpha_minus"], torch.tensor([0.03, 0.05], dtype=ALPHA.dtype))


def test_delta_rule_matches_value_update():
    params = {"alpha": ALPHA, "beta": t(2.0)}
    z = -0.3
    # chose right, rewarded: Q_R = z / (2 beta) = -0.075, error 1.075; w = beta (v_R - v_L) moves by beta alpha err x
    dw, _ = step(DeltaRule(), params, y=1, r=1)
    assert dw.tolist() == pytest.approx([2 * 0.1 * 1.075, 2 * 0.2 * 1.075 * 0.8], abs=1e-12)
    assert dw.tolist() == pytest.approx([0.1 * (2 - z / 2), 0.2 * (2 - z / 2) * 0.8], abs=1e-12)
    # chose left, rewarded: Q_L = -z / (2 beta) = 0.075, error 0.925; v_L grows so w falls
    dw, _ = step(DeltaRule(), params, y=0, r=1)
    assert dw.tolist() == pytest.approx([-2 * 0.1 * 0.925, -2 * 0.2 * 0.925 * 0.8], abs=1e-12)
    # explicit value bookkeeping
    v_r, v_l = W / 4.0, -W / 4.0
    v_l_new = v_l + ALPHA * (1.0 - (v_l * X).sum()) * X
    assert (2.0 * (v_r - v_l_new)).tolist() == pytest.approx((W + dw).tolist(), abs=1e-12)


def test_global_error_hebbian():
    params = {"alpha": ALPHA}
    dw, _ = step(GlobalErrorHebbian(), params, y=1, r=0)  # rbar = p, post = +1
    assert dw.tolist() == pytest.approx([0.1 * (0 - P), 0.2 * (0 - P) * 0.8], abs=1e-12)
    dw, _ = step(GlobalErrorHebbian(), params, y=0, r=1)  # rbar = 1 - p, post = -1
    assert dw.tolist() == pytest.approx([-0.1 * P, -0.2 * P * 0.8], abs=1e-12)


def test_eligibility_trace_two_trials():
    rule = EligibilityTrace()
    params = {"alpha": ALPHA, "lam": t(0.5), "baseline": t(0.7)}
    dw1, e1 = step(rule, params, y=1, r=0)
    assert e1.tolist() == pytest.approx([1.0, 0.8])
    assert dw1.tolist() == pytest.approx([0.1 * -0.7 * 1.0, 0.2 * -0.7 * 0.8], abs=1e-12)
    dw2, e2 = step(rule, params, y=0, r=1, x=torch.tensor([1.0, -0.5]), state=e1)
    assert e2.tolist() == pytest.approx([0.5 - 1.0, 0.4 + 0.5])
    assert dw2.tolist() == pytest.approx([0.1 * 0.3 * -0.5, 0.2 * 0.3 * 0.9], abs=1e-12)


def test_reward_gated_reinforce():
    rule = RewardGatedReinforce()
    params = {"alpha0": ALPHA, "alpha1": torch.tensor([0.3, 0.4]), "beta": t(0.5), "eta": t(0.2)}
    dw, rbar = step(rule, params, y=1, r=1)
    assert rbar.tolist() == pytest.approx([0.8 * 0.5 + 0.2 * 1.0])
    rate = [0.1 + 0.3 * 0.6, 0.2 + 0.4 * 0.6]
    assert dw.tolist() == pytest.approx([rate[0] * 0.5 * (1 - P), rate[1] * 0.5 * (1 - P) * 0.8], abs=1e-12)


def test_compressed_sign_and_topk():
    params = {"alpha": ALPHA, "beta": t(0.5)}
    residual = torch.tensor([0.05, 0.01])
    v = [0.1 * -0.5 * (1 - P) * 1.0 + 0.05, 0.2 * -0.5 * (1 - P) * 0.8 + 0.01]  # y=1, r=0
    assert v[0] > 0 > v[1]
    dw, new = step(CompressedReinforce(mode="sign"), params, y=1, r=0, state=residual)
    assert dw.tolist() == pytest.approx([0.1, -0.2])
    assert new.tolist() == pytest.approx([v[0] - 0.1, v[1] + 0.2], abs=1e-12)
    dw, new = step(CompressedReinforce(mode="topk", k=1), params, y=1, r=0, state=residual)
    assert dw.tolist() == pytest.approx([0.0, v[1]], abs=1e-12)  # |v[1]| is the larger entry
    assert new.tolist() == pytest.approx([v[0], 0.0], abs=1e-12)


def test_zero_rule():
    dw, state = step(ZeroRule(), {}, y=1, r=1)
    assert dw.tolist() == [0.0, 0.0]
    assert state.shape == (0,)
