"""Hybrid rules: a parametric rule plus a bounded network that starts at exactly zero."""

import pytest
import torch

from learnrules.models.hybrid import HybridRule
from learnrules.models.neural import GRURule, MLPRule, load_neural_rule, neural_rule_from_config, save_neural_rule
from learnrules.other_rules import make_rule


def batch(n=64, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = 2 * torch.randn(n, k, generator=g)
    x = torch.cat([torch.ones(n, 1), torch.rand(n, k - 1, generator=g) * 2 - 1], -1)
    y = (torch.rand(n, generator=g) < 0.5).double()
    r = (torch.rand(n, generator=g) < 0.5).double()
    return w, x, y, r


def hybrid(kind="mlp", base="reinforce-baseline", seed=0):
    part = MLPRule(2, hidden=(8, 8), max_update=0.1, seed=seed) if kind == "mlp" else \
        GRURule(2, hidden=(8,), gru_hidden=4, max_update=0.1, seed=seed)
    return HybridRule(make_rule(base), part, base_name=base)


@pytest.mark.parametrize("kind", ["mlp", "gru"])
def test_hybrid_starts_as_exactly_its_parametric_rule(kind):
    rule, base = hybrid(kind), make_rule("reinforce-baseline")
    params = base.default_params(2)
    w, x, y, r = batch()
    ctx = rule.init_context(params, (w.shape[0],), 2)
    assert torch.equal(rule.drift(params, w, x, y, r, ctx), base.drift(params, w, x, y, r, ctx[..., :0]))
    assert set(rule.parameters) == set(base.parameters) and rule.name == f"ReinforceBaseline+{kind.upper()}"


def test_zero_start_still_has_a_gradient_on_the_last_layer():
    rule = hybrid()
    w, x, y, r = batch()
    rule.drift(rule.default_params(2), w, x, y, r, w[:, :0]).pow(2).sum().backward()  # zero: dw is 0
    last = rule.network.mlp[-1].weight
    rule.network.zero_grad()
    rule.drift(rule.default_params(2), w, x, y, r, w[:, :0]).sum().backward()
    assert last.grad.abs().max() > 0


def test_network_part_is_bounded_by_max_update():
    rule = hybrid()
    with torch.no_grad():
        for p in rule.network.parameters():
            p.normal_(0, 10)  # a network gone wild
    w, x, y, r = batch(n=512)
    out = rule.part.drift({}, 50 * w, x, y, r, w[:, :0])
    assert out.abs().max() <= 0.1 + 1e-12 and out.abs().max() > 0.09  # saturated, not beyond


def test_history_base_and_gru_part_share_the_context():
    rule = hybrid("gru", base="eligibility")
    params = rule.default_params(2)
    assert rule.context_size == 2 + 4 and not rule.markov  # one trace per weight, then the GRU state
    g = torch.Generator().manual_seed(1)
    x = torch.stack([torch.ones(3, 30), torch.rand(3, 30, generator=g) * 2 - 1], -1)
    y = (torch.rand(3, 30, generator=g) < 0.5).double()
    r = (torch.rand(3, 30, generator=g) < 0.5).double()
    whole = rule.contexts(params, x, y, r)
    ctx, steps = rule.init_context(params, (3,), 2), []
    for t in range(30):
        ctx = rule.next_context(params, ctx, x[:, t], y[:, t], r[:, t])
        steps.append(ctx)
    torch.testing.assert_close(whole, torch.stack(steps, 1))


@pytest.mark.parametrize("kind", ["mlp", "gru"])
def test_config_and_file_round_trip_rebuild_the_same_hybrid(kind, tmp_path):
    rule = hybrid(kind)
    with torch.no_grad():
        for p in rule.network.parameters():
            p.add_(0.1)
    params = rule.default_params(2)
    w, x, y, r = batch()
    ctx = rule.init_context(params, (w.shape[0],), 2)
    clone = neural_rule_from_config(rule.config.to_dict(), rule.state_dict())
    assert isinstance(clone, HybridRule) and clone.config == rule.config
    save_neural_rule(rule, tmp_path / "rule.pt")
    loaded = load_neural_rule(tmp_path / "rule.pt")
    for other in (clone, loaded):
        assert torch.equal(other.drift(params, w, x, y, r, ctx), rule.drift(params, w, x, y, r, ctx))


def test_copy_does_not_share_the_network():
    rule = hybrid()
    twin = rule.copy()
    assert twin.network is twin.part.network and twin.network is not rule.network


def test_bad_parts_are_refused():
    with pytest.raises(ValueError, match="fittable parametric"):
        HybridRule(make_rule("compressed"), MLPRule(2, max_update=0.1))
    with pytest.raises(ValueError, match="not a hybrid"):
        HybridRule(make_rule("reinforce"), hybrid())
    with pytest.raises(ValueError, match="max_update"):
        MLPRule(2, max_update=0.0)
