import math

import numpy as np
import pytest
import torch

from learnrules.models.neural import (
    GRURule,
    MLPRule,
    NeuralRuleConfig,
    load_neural_rule,
    neural_rule_from_config,
    rule_network,
    save_neural_rule,
)
from learnrules.models.neural_grid import grid_features, history_context, rule_update_grid
from learnrules.other_rules import Reinforce

BATCHES = [(), (4,), (3, 5)]


def make(kind, k, seed=0, **kw):
    return MLPRule(k, seed=seed, **kw) if kind == "mlp" else GRURule(k, gru_hidden=6, seed=seed, **kw)


def random_trial(batch, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*batch, k, generator=g)
    x = torch.randn(*batch, k, generator=g)
    y = (torch.rand(batch, generator=g) < 0.5).double()
    r = (torch.rand(batch, generator=g) < 0.5).double()
    return w, x, y, r


@pytest.mark.parametrize("kind", ["mlp", "gru"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("batch", BATCHES)
def test_drift_and_context_shapes(kind, k, batch):
    rule = make(kind, k)
    w, x, y, r = random_trial(batch, k)
    c0 = rule.init_context({}, batch, k)
    assert c0.shape == (*batch, rule.context_size)
    ctx = rule.next_context({}, c0, x, y, r)
    assert ctx.shape == (*batch, rule.context_size)
    dw = rule.drift({}, w, x, y, r, ctx)
    assert dw.shape == (*batch, k) and torch.isfinite(dw).all()
    seq = rule.contexts({}, x.unsqueeze(-2).expand(*batch, 7, k), y.unsqueeze(-1).expand(*batch, 7),
                        r.unsqueeze(-1).expand(*batch, 7))
    assert seq.shape == (*batch, 7, rule.context_size)


@pytest.mark.parametrize("kind", ["mlp", "gru"])
def test_interface_flags(kind):
    rule = make(kind, 2)
    assert dict(rule.parameters) == {}
    assert rule.markov is (kind == "mlp")
    assert rule.context_size == (0 if kind == "mlp" else 6)
    assert rule_network(rule) is rule.network
    assert rule_network(Reinforce()) is None
    assert sum(p.numel() for p in rule.network.parameters()) > 0


@pytest.mark.parametrize("kind", ["mlp", "gru"])
def test_drift_vectorized_equals_loop(kind):
    rule = make(kind, 3)
    w, x, y, r = random_trial((6,), 3, seed=1)
    ctx = torch.randn(6, rule.context_size)
    together = rule.drift({}, w, x, y, r, ctx)
    looped = torch.stack([rule.drift({}, w[i], x[i], y[i], r[i], ctx[i]) for i in range(6)])
    torch.testing.assert_close(together, looped)


def test_gru_contexts_equal_step_by_step():
    rule = GRURule(2, gru_hidden=5, seed=3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 9, 2, generator=g)
    y = (torch.rand(3, 9, generator=g) < 0.5).double()
    r = (torch.rand(3, 9, generator=g) < 0.5).double()
    fast = rule.contexts({}, x, y, r)
    c, slow = rule.init_context({}, (3,), 2), []
    for t in range(9):
        c = rule.next_context({}, c, x[:, t], y[:, t], r[:, t])
        slow.append(c)
    torch.testing.assert_close(fast, torch.stack(slow, 1))
    # The context reads the history: changing an early reward changes later contexts.
    r2 = r.clone()
    r2[:, 0] = 1 - r2[:, 0]
    assert (rule.contexts({}, x, y, r2)[:, -1] - fast[:, -1]).abs().max() > 1e-6


def _gru_grads(rule, x, y, r, loss):
    network = rule_network(rule)
    network.zero_grad()
    contexts = rule.contexts({}, x, y, r)
    loss(contexts).backward()
    return contexts.detach(), torch.cat([p.grad.flatten() for p in network.gru.parameters()])


@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_gru_truncated_backprop_keeps_values_and_first_window_gradient(batch):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*batch, 23, 2, generator=g)
    y = (torch.rand(*batch, 23, generator=g) < 0.5).double()
    r = (torch.rand(*batch, 23, generator=g) < 0.5).double()
    full, short = GRURule(2, gru_hidden=4, seed=0, bptt_window=None), GRURule(2, gru_hidden=4, seed=0, bptt_window=5)
    everything = lambda c: c.pow(2).sum()  # noqa: E731
    first_window = lambda c: c[..., :5, :].pow(2).sum()  # noqa: E731
    c_full, g_full = _gru_grads(full, x, y, r, everything)
    c_short, g_short = _gru_grads(short, x, y, r, everything)
    torch.testing.assert_close(c_short, c_full)  # the states are exact, 23 = 4 windows of 5 + 3
    assert (g_short - g_full).abs().max() > 1e-6  # later windows do not see gradients through their start
    # the first window has no history to truncate: its gradient is the full one
    torch.testing.assert_close(_gru_grads(short, x, y, r, first_window)[1], _gru_grads(full, x, y, r, first_window)[1])
    # a window as long as the sequence is no truncation at all
    torch.testing.assert_close(_gru_grads(GRURule(2, gru_hidden=4, seed=0, bptt_window=23), x, y, r, everything)[1],
                               g_full)
    with pytest.raises(ValueError, match="bptt_window"):
        GRURule(2, bptt_window=0)


@pytest.mark.parametrize("kind", ["mlp", "gru"])
def test_initial_rule_is_near_zero(kind):
    rule = make(kind, 2)
    w, x, y, r = random_trial((200,), 2)
    dw = rule.drift({}, w, x, y, r, torch.zeros(200, rule.context_size))
    assert dw.abs().max() < 1e-2
    assert dw.abs().max() > 0  # but not exactly zero: gradients flow


def test_seed_reproducible_and_distinct():
    a, b, c = MLPRule(2, seed=1), MLPRule(2, seed=1), MLPRule(2, seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("kind", ["mlp", "gru"])
def test_save_load_round_trip(kind, tmp_path):
    rule = make(kind, 3, seed=4, hidden=(8, 8), activation="tanh")
    with torch.no_grad():
        for p in rule.network.parameters():
            p.add_(0.1)  # a "trained" state, not the seeded one
    w, x, y, r = random_trial((5,), 3)
    ctx = rule.next_context({}, rule.init_context({}, (5,), 3), x, y, r)
    expected = rule.drift({}, w, x, y, r, ctx)
    clone = neural_rule_from_config(rule.config.to_dict(), rule.state_dict())
    torch.testing.assert_close(clone.drift({}, w, x, y, r, ctx), expected, rtol=0, atol=0)
    save_neural_rule(rule, tmp_path / "rule.pt")
    loaded = load_neural_rule(tmp_path / "rule.pt")
    assert loaded.config == rule.config and type(loaded) is type(rule)
    ctx2 = loaded.next_context({}, loaded.init_context({}, (5,), 3), x, y, r)
    torch.testing.assert_close(loaded.drift({}, w, x, y, r, ctx2), expected, rtol=0, atol=0)


def test_config_json_round_trip_and_errors():
    cfg = NeuralRuleConfig("gru", 3, (4, 5), 7, "silu", 0.01)
    assert NeuralRuleConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="kind"):
        neural_rule_from_config({**cfg.to_dict(), "kind": "lstm"})
    with pytest.raises(ValueError, match="activation"):
        MLPRule(2, activation="gelu")
    with pytest.raises(ValueError, match="n_features"):
        MLPRule(0)
    with pytest.raises(ValueError, match="built for 2 weights"):
        MLPRule(2).drift({}, torch.zeros(3), torch.zeros(3), torch.tensor(1.0), torch.tensor(1.0), torch.zeros(0))


def test_copy_is_independent():
    rule = MLPRule(2, seed=0)
    clone = rule.copy()
    with torch.no_grad():
        next(clone.network.parameters()).add_(1.0)
    assert not torch.equal(next(rule.network.parameters()), next(clone.network.parameters()))


def test_gru_from_mlp_starts_as_the_mlp_and_can_learn_history():
    mlp = MLPRule(2, hidden=(8, 4), activation="tanh", seed=1)
    with torch.no_grad():  # a "fitted" network: nothing left at its initial values
        for p in mlp.network.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    gru = GRURule.from_mlp(mlp, gru_hidden=5, seed=2)
    assert (gru.config.hidden, gru.config.activation, gru.context_size) == ((8, 4), "tanh", 5)
    w, x, y, r = random_trial((30,), 2, seed=3)
    histories = torch.randn(30, 5, generator=torch.Generator().manual_seed(4))  # the update ignores them yet
    torch.testing.assert_close(gru.drift({}, w, x, y, r, histories), mlp.drift({}, w, x, y, r, None),
                               rtol=1e-12, atol=1e-15)  # equal up to the summation order of a wider matmul
    loss = gru.drift({}, w, x, y, r, histories).pow(2).sum()
    loss.backward()
    history_columns = gru.network.update.mlp[0].weight.grad[:, -5:]
    assert history_columns.abs().max() > 1e-6  # training can move the update onto the history
    with torch.no_grad():
        for p in gru.network.parameters():
            p.add_(1.0)
    for k, v in mlp.state_dict().items():  # the source network is untouched and shares no storage
        assert torch.equal(v, before[k])


def test_grid_features_vocabulary():
    x = grid_features(np.array([-0.5, 0.25]), ["bias", "stimulus", "stimulus_left", "stimulus_right", "other"],
                      fixed={"other": 2.0})
    np.testing.assert_allclose(x, [[1, -0.5, 0.5, 0, 2], [1, 0.25, 0, 0.25, 2]])


def test_update_grid_matches_reinforce_by_hand():
    rule, alpha = Reinforce(), torch.tensor([0.1, 0.2])
    df = rule_update_grid(rule, {"alpha": alpha}, weights_grid={"bias": [0.0, 1.0], "stimulus": [2.0]},
                          stimulus_grid=[-0.5, 0.5], feature_names=["bias", "stimulus"])
    assert len(df) == 2 * 2 * 2 * 2 * 2  # w_bias x stimulus x choice x reward, times 2 weights
    assert list(df.columns) == ["w_bias", "w_stimulus", "stimulus", "choice", "reward", "feature", "dw"]
    row = df[(df.w_bias == 1.0) & (df.stimulus == 0.5) & (df.choice == 1) & (df.reward == 1)]
    p = 1 / (1 + math.exp(-(1.0 + 2.0 * 0.5)))
    got = dict(zip(row.feature, row.dw, strict=True))
    assert got["bias"] == pytest.approx(0.1 * (1 - p))
    assert got["stimulus"] == pytest.approx(0.2 * (1 - p) * 0.5)
    assert (df[df.reward == 0].dw == 0).all()  # REINFORCE: no update without reward


def test_update_grid_gru_conditioned_on_reward_rate():
    rule = GRURule(2, gru_hidden=4, seed=0, init_scale=1.0)
    low = history_context(rule, {}, ["bias", "stimulus"], reward_rate=0.1)
    high = history_context(rule, {}, ["bias", "stimulus"], reward_rate=0.9)
    assert low.shape == (4,) and (low - high).abs().max() > 1e-4
    kw = dict(weights_grid={"stimulus": [0.0, 1.0]}, stimulus_grid=[0.5], feature_names=["bias", "stimulus"])
    d_low = rule_update_grid(rule, {}, reward_rate=0.1, **kw)
    d_high = rule_update_grid(rule, {}, reward_rate=0.9, **kw)
    assert (d_low.reward_rate == 0.1).all()
    assert np.abs(d_low.dw.to_numpy() - d_high.dw.to_numpy()).max() > 1e-6
    with pytest.raises(ValueError, match="not among"):
        rule_update_grid(rule, {}, weights_grid={"lapse": [0.0]}, stimulus_grid=[0.0], feature_names=["bias"])
