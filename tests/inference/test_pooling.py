import math

import numpy as np
import pytest
import torch

from learnrules.inference.result import FitResult
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.inference.variational.pooling import PooledTheta, fit_pooled
from learnrules.inference.variational.population import PopulationConfig, log_marginal, population_posterior
from learnrules.models.dynamics import DynamicsConfig, drift_sequence
from learnrules.other_rules import EligibilityTrace, ReinforceBaseline
from learnrules.synthetic.cohort import simulate_cohort

RULE = ReinforceBaseline()
MEDIAN = {"alpha": [0.05, 0.1], "beta": 0.3}


def cohort(n_animals, n_trials, seed, population_sd=0.5):
    return simulate_cohort(RULE, n_animals=n_animals, n_trials=n_trials, params=MEDIAN, sigma=0.02,
                           population_sd={"alpha": population_sd}, seed=seed, dtype=torch.float64)


def test_each_animal_drifts_with_its_own_parameters():
    sim = cohort(3, 40, seed=0)
    data = sim.tensors().to(torch.float64)
    theta = PooledTheta(RULE, data, FitConfig(), pooling="hierarchical", population=PopulationConfig(),
                        group=torch.zeros(3, dtype=torch.long))
    with torch.no_grad():
        theta.rule_u["alpha"].copy_(torch.log(torch.as_tensor(sim.animal_params["alpha"])))
    hyper = theta.hyper()
    w = torch.as_tensor(sim.weights)
    drift = drift_sequence(RULE, hyper.params, data, w)
    for a in range(3):
        own = {"alpha": torch.as_tensor(sim.animal_params["alpha"][a]), "beta": hyper.params["beta"][a, 0]}
        alone = drift_sequence(RULE, own, data.select([a]), w[a:a + 1])
        torch.testing.assert_close(drift[a:a + 1], alone)
    sub = hyper.select(torch.tensor([2, 0]))
    torch.testing.assert_close(sub.params["alpha"][:, 0], hyper.params["alpha"][[2, 0], 0])


def test_log_marginal_matches_quadrature():
    # one animal, one parameter: a quadratic data term integrated against N(mu, sd^2) on a fine grid
    m, g, h = torch.tensor([[0.3]]), torch.tensor([[-0.8]]), torch.tensor([[[2.5]]])
    mu, log_sd = torch.tensor([[-0.2]]), torch.tensor([math.log(0.7)])
    grid = torch.linspace(-12, 12, 200001, dtype=torch.float64)
    d = grid - m[0, 0]
    sd = log_sd.exp()[0]
    density = torch.exp(g[0, 0] * d - 0.5 * h[0, 0, 0] * d ** 2 - 0.5 * ((grid - mu[0, 0]) / sd) ** 2) / sd
    brute = torch.log(torch.trapezoid(density, grid)) - 0.5 * math.log(2 * math.pi)
    value = log_marginal(mu.double(), log_sd.double(), torch.zeros(1, dtype=torch.long), m.double(), g.double(),
                         h.double())
    assert float(value) == pytest.approx(float(brute), abs=1e-8)


def test_animal_posterior_is_the_normal_normal_product():
    # data term N(u; 1, 1/4) as a quadratic at m = 0: the posterior under N(0, 1) has mean 0.8 and variance 0.2
    m, g, h = torch.zeros(1, 1), torch.tensor([[4.0]]), torch.tensor([[[4.0]]])
    post = population_posterior(torch.zeros(1, 1), torch.zeros(1), torch.zeros(1, dtype=torch.long), m, g, h,
                                torch.zeros(1), torch.ones(1), PopulationConfig(), learn_sd=False)
    assert float(post.animal_mean[0, 0]) == pytest.approx(0.8)
    assert float(post.animal_cov[0, 0, 0]) == pytest.approx(0.2)
    assert float(post.unpooled_mean[0, 0]) == pytest.approx(0.8)


def test_refuses_rules_it_cannot_pool():
    data = cohort(2, 30, seed=1).tensors().to(torch.float64)
    with pytest.raises(ValueError, match="history context"):
        fit_pooled(data, rule=EligibilityTrace(), pooling="hierarchical")
    with pytest.raises(ValueError, match="needs a rule with parameters"):
        fit(data, pooling="independent")
    with pytest.raises(ValueError, match="pooling must be one of"):
        fit(data, rule=RULE, pooling="partial")
    with pytest.raises(ValueError, match="apply to per-animal pooling"):
        fit(data, rule=RULE, groups={"sim000": "a", "sim001": "b"})


def test_simulator_draws_per_animal_rates_on_the_same_trials():
    plain = simulate_cohort(RULE, n_animals=400, n_trials=5, params=MEDIAN, seed=3)
    same = simulate_cohort(RULE, n_animals=400, n_trials=5, params=MEDIAN, seed=3, population_sd=0.0)
    mixed = simulate_cohort(RULE, n_animals=400, n_trials=5, params=MEDIAN, seed=3, population_sd={"alpha": 0.5})
    assert same.animal_params is None
    np.testing.assert_array_equal(plain.weights, same.weights)
    for column in ("contrastLeft", "contrastRight", "answer"):
        np.testing.assert_array_equal(plain.table[column], mixed.table[column])
    log_rates = np.log(mixed.animal_params["alpha"])
    assert log_rates.shape == (400, 2)
    np.testing.assert_allclose(log_rates.std(0), 0.5, atol=0.05)
    np.testing.assert_allclose(np.median(mixed.animal_params["alpha"], 0), MEDIAN["alpha"], rtol=0.12)
    np.testing.assert_array_equal(mixed.animal_params["beta"], 0.3)
    with pytest.raises(ValueError, match="unknown parameters"):
        simulate_cohort(RULE, n_animals=2, n_trials=5, population_sd={"gamma": 1.0})


@pytest.mark.slow
def test_hierarchical_recovers_rates_and_shrinks_towards_the_population(tmp_path):
    sim = cohort(10, 3000, seed=4)
    data = sim.tensors().to(torch.float64)
    config = FitConfig(dynamics=DynamicsConfig(sigma=0.05))
    hier = fit(data, rule=RULE, config=config, pooling="hierarchical")
    indep = fit(data, rule=RULE, config=config, pooling="independent")
    assert hier.pooling == "hierarchical" and hier.animal_params["alpha"].shape == (10, 2)
    true = np.log(sim.animal_params["alpha"][:, 1])
    est = np.log(hier.animal_params["alpha"][:, 1])
    assert np.corrcoef(est, true)[0, 1] > 0.8
    # shrinkage: each pooled log rate lies between the independent fit's and the population median
    median = np.log(hier.params["alpha"][1])
    free = np.log(indep.animal_params["alpha"][:, 1])
    between = (np.minimum(free, median) - 0.05 <= est) & (est <= np.maximum(free, median) + 0.05)
    assert between.mean() >= 0.9
    # the table's unpooled column approximates the independent fit by the same expansion
    table = hier.animal_table
    unpooled = table[(table.parameter == "alpha") & (table.feature == "stimulus")]["unpooled"].to_numpy()
    assert np.corrcoef(np.log(unpooled), free)[0, 1] > 0.8
    loaded = FitResult.load(hier.save(tmp_path / "fit.npz"))
    assert loaded.pooling == "hierarchical"
    np.testing.assert_array_equal(loaded.animal_params["alpha"], hier.animal_params["alpha"])
    assert loaded.population_table.equals(hier.population_table)


def test_new_animal_predictive_weights_each_draw_by_its_past_predictions():
    from learnrules.inference.evaluation.population_predict import _mixture

    log_pred = torch.log(torch.tensor([[0.8, 0.9], [0.2, 0.1]], dtype=torch.float64))
    p_right = torch.tensor([[0.8, 0.9], [0.8, 0.1]], dtype=torch.float64)
    p, ll = _mixture(log_pred, p_right, 2)
    # trial 0: both draws weigh 1/2; trial 1: weights 0.8, 0.2 from how each predicted trial 0
    torch.testing.assert_close(ll, torch.log(torch.tensor([[0.5, 0.74]], dtype=torch.float64)))
    torch.testing.assert_close(p, torch.tensor([[0.8, 0.8 * 0.9 + 0.2 * 0.1]], dtype=torch.float64))


def test_fitted_animals_are_scored_with_their_own_parameters():
    from learnrules.inference.evaluation.evaluate import gaussian_filter_loglik
    from learnrules.inference.evaluation.population_predict import pooled_filter_score

    sim = cohort(3, 200, seed=6)
    data = sim.tensors().to(torch.float64)
    res = fit(data, rule=RULE, pooling="independent", config=FitConfig(max_steps=3))
    init_mean, init_sd = res.weights_mean[:, 0], np.full((3, 2), 0.3)
    score = pooled_filter_score(data, RULE, res, init_mean=init_mean, init_sd=init_sd)
    for a in range(3):
        own = {k: v[a] for k, v in res.animal_params.items()}
        alone = gaussian_filter_loglik(data.select([a]), RULE, own, sigma=res.sigma, init_mean=init_mean[a:a + 1],
                                       init_sd=init_sd[a:a + 1])
        np.testing.assert_allclose(score.loglik[a], alone.loglik[0])


def test_groups_give_each_group_a_mean_and_their_difference_an_interval():
    data = cohort(4, 200, seed=7).tensors().to(torch.float64)
    labels = {"sim000": "control", "sim001": "lesion", "sim002": "control", "sim003": "lesion"}
    res = fit(data, rule=RULE, pooling="hierarchical", groups=labels, config=FitConfig(max_steps=3),
              population=PopulationConfig(max_rounds=1))
    pop = res.population_table
    medians = pop[(pop.quantity == "median") & (pop.parameter == "alpha") & (pop.feature == "stimulus")]
    assert list(medians.group) == ["control", "lesion"]
    diff = pop[pop.quantity == "difference"]
    assert list(diff.group.unique()) == ["lesion-control"] and len(diff) == 3
    row = diff[(diff.parameter == "alpha") & (diff.feature == "stimulus")].iloc[0]
    ratio = np.log(medians["mean"].iloc[1] / medians["mean"].iloc[0])
    assert row["mean"] == pytest.approx(ratio) and row["lower"] < row["mean"] < row["upper"]
    assert list(res.animal_table.group[:4]) == ["control", "lesion", "control", "lesion"]
    with pytest.raises(ValueError, match="no label for subjects"):
        fit(data, rule=RULE, pooling="hierarchical", groups={"sim000": "control"})
