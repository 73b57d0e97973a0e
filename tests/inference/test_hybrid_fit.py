"""Hybrid and network rules fitted by full-batch L-BFGS from the parametric fit: never worse, converged, repeatable."""

import numpy as np
import pytest
import torch

from learnrules.behavior.load import load_trials
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.hybrid import HybridRule
from learnrules.models.neural import MLPRule
from learnrules.other_rules import make_rule
from learnrules.synthetic import simulate_cohort
from learnrules.synthetic.agent import simulate_agents
from learnrules.workflow import NEURAL_FIT_CONFIG, FitPredictor, cross_validate_rules, fit_model

BASE = FitConfig(param_posterior="none")


@pytest.fixture(scope="module")
def cohort():
    sim = simulate_cohort(make_rule("reinforce-baseline"), n_animals=3, n_trials=1500, sigma=0.01, seed=4)
    return sim, sim.tensors(np.arange(3))


@pytest.fixture(scope="module")
def staged(cohort):
    """The parametric fit, then two hybrid fits from it with the same seed."""
    _, data = cohort
    base = fit(data, rule=make_rule("reinforce-baseline"), config=BASE, seed=0)
    config = FitConfig(**{**NEURAL_FIT_CONFIG.__dict__, "max_steps": 40})

    def hybrid():
        rule = HybridRule(make_rule("reinforce-baseline"), MLPRule(2, hidden=(8, 8), max_update=0.1, seed=0,
                                                                   activation="tanh"))
        return fit(data, rule=rule, config=config, seed=0, start=base)

    return base, hybrid(), hybrid()


def test_the_hybrid_starts_at_the_parametric_fit_and_never_ends_below_it(staged):
    base, first, _ = staged
    assert first.elbo_trace[0] == pytest.approx(base.elbo, abs=1e-6 * abs(base.elbo))  # the same model at step 0
    assert first.elbo >= base.elbo - 1e-6 * abs(base.elbo)
    assert first.n_steps <= 40


def test_same_seed_and_data_give_identical_fits(staged):
    _, first, second = staged
    assert first.elbo == second.elbo
    for name, value in first.rule_state.items():
        np.testing.assert_array_equal(value, second.rule_state[name])
    np.testing.assert_array_equal(first.params["alpha"], second.params["alpha"])


def test_the_fitted_hybrid_keeps_its_parameters_and_predicts_with_them(staged, cohort):
    sim, data = cohort
    _, first, _ = staged
    rule = first.neural_rule()
    assert isinstance(rule, HybridRule) and set(first.params) == {"alpha", "beta"}
    np.testing.assert_allclose(first.params["alpha"], sim.params["alpha"], rtol=0.5)  # near the truth 0.03


def test_twins_of_a_fitted_hybrid_stay_within_the_weights_the_posterior_visited(staged, cohort):
    _, data = cohort
    _, first, _ = staged
    visited = first.weights_mean[first.valid]
    lo, hi = visited.min(0), visited.max(0)
    span = hi - lo
    answer = (data.features[..., 1] > 0).double()
    params = {k: torch.as_tensor(v) for k, v in first.params.items()}
    for seed in range(3):  # noise-free replays, each on its own choices
        twins = simulate_agents(first.neural_rule(), params, data.features, answer,
                                torch.as_tensor(first.weights_mean[:, 0]), torch.zeros_like(data.features),
                                torch.Generator().manual_seed(seed))
        w = twins.weights.reshape(-1, 2).numpy()
        assert np.all(np.isfinite(w))
        assert np.all(w.min(0) >= lo - 0.5 * span) and np.all(w.max(0) <= hi + 0.5 * span)


def _trials(sim):
    return load_trials(sim.table)


def test_fit_model_runs_both_stages_and_caps_the_steps(cohort):
    sim, _ = cohort
    data = _trials(sim)
    model = fit_model(data, "reinforce-baseline+mlp", seed=0, max_steps=3, progress=False)
    assert model.result.n_steps <= 3 and not model.result.converged and "NOT converged" in model.note
    assert isinstance(model.rule, HybridRule) and model.method == "variational"
    score = FitPredictor(model).score(data)
    assert np.isfinite(score.nats_per_trial)
    plain = fit_model(data, "mlp", seed=0, max_steps=2, progress=False)
    assert isinstance(plain.rule, MLPRule) and plain.rule.config.max_update is not None
    assert plain.result.n_steps <= 2


@pytest.mark.parametrize("name", ["compressed+mlp", "nope+mlp", "reinforce+lstm", "mlp+mlp"])
def test_unknown_hybrids_are_refused_by_name(cohort, name):
    sim, _ = cohort
    with pytest.raises(ValueError, match="unknown rule"):
        fit_model(_trials(sim), name)


def test_restarts_choose_on_held_out_sessions_and_report_the_spread(cohort):
    sim, _ = cohort
    model = fit_model(_trials(sim), "reinforce+mlp", seed=0, restarts=2, max_steps=3, progress=False)
    scores = [model.validation[f"heldout_ll_seed_{s}"] for s in (0, 1)]
    assert model.validation["heldout_ll"] == max(scores)
    assert model.validation["heldout_spread"] == pytest.approx(max(scores) - min(scores))
    assert "best of 2 initializations" in model.note


def _cross_validated(sim, rules, k):
    """Cross-validate ``rules`` with 2-step fits; return the table and each fold's (rule, start rule) pairs."""
    calls = []

    def fit(train, name, start):
        calls.append((id(train), name, None if start is None else start.rule_name))
        return fit_model(train, name, start=start, max_steps=2, config=BASE, progress=False)

    cv = cross_validate_rules(_trials(sim), rules, fit, k=k)
    folds = {}
    for train, name, start in calls:
        folds.setdefault(train, []).append((name, start))
    return cv, [sorted(pairs) for pairs in folds.values()]


def test_cross_validation_fits_each_parametric_stage_once_per_fold(cohort):
    sim, _ = cohort
    cv, folds = _cross_validated(sim, ["reinforce-baseline+mlp", "reinforce-baseline", "mlp"], k=3)
    assert len(folds) == 3  # three folds, three fits each
    for names in folds:
        assert names == [("mlp", "ReinforceBaseline"), ("reinforce-baseline", None),
                         ("reinforce-baseline+mlp", "ReinforceBaseline")]
    assert set(cv["rule"]) == {"reinforce-baseline+mlp", "reinforce-baseline", "mlp"}


def test_a_gru_hybrid_is_grown_from_its_fitted_mlp_hybrid_and_starts_at_its_elbo(cohort):
    sim, _ = cohort
    data = _trials(sim)
    mlp = fit_model(data, "reinforce-baseline+mlp", seed=0, max_steps=4, progress=False)
    gru = fit_model(data, "reinforce-baseline+gru", seed=0, max_steps=3, start=mlp.result, progress=False)
    assert gru.rule.config.kind == "gru" and "grown from the reinforce-baseline+mlp fit" in gru.note
    elbo = mlp.result.elbo
    assert gru.result.elbo_trace[0] == pytest.approx(elbo, abs=1e-6 * abs(elbo))  # the same model at step 0
    assert gru.result.elbo >= elbo - 1e-6 * abs(elbo)
    whole = fit_model(data, "reinforce-baseline+gru", seed=0, max_steps=4, progress=False)
    assert "fitted as reinforce-baseline+mlp, then grown into the GRU" in whole.note
    assert whole.result.n_steps > 4  # both network stages ran
    with pytest.raises(ValueError, match="ReinforceBaseline or ReinforceBaseline\\+MLP fit"):
        fit_model(data, "reinforce-baseline+gru", start=fit_model(data, "reinforce+mlp", max_steps=1,
                                                                   progress=False).result)


def test_cross_validation_grows_each_gru_from_the_folds_mlp_fit_when_both_are_compared(cohort):
    sim, _ = cohort
    cv, folds = _cross_validated(sim, ["reinforce+gru", "reinforce+mlp", "gru"], k=2)
    assert len(folds) == 2
    for names in folds:
        assert names == [("gru", "ReinforceBaseline"), ("reinforce", None), ("reinforce+gru", "Reinforce+MLP"),
                         ("reinforce+mlp", "Reinforce"), ("reinforce-baseline", None)]
    assert list(cv["rule"].unique()) == ["reinforce+gru", "reinforce+mlp", "gru"]
