
import pyro
import pytest
import torch
from pyro.infer import Predictive

from learnrules.models.dynamics import DynamicsConfig
from learnrules.models.model import model
from learnrules.other_rules import ReinforceBaseline

import fitting_helpers as helpers


def cohort(rule, n_trials=15):
    params = {"alpha": torch.tensor([0.3, 0.2]), "beta": torch.tensor(0.4)}
    return helpers.simulate(rule, params, n_animals=3, n_trials=n_trials, sigma=0.1, seed=2)[0]


@pytest.mark.parametrize("rule", [None, ReinforceBaseline()])
def test_prior_predictive_shapes_and_site_names(rule):
    data = cohort(rule)
    draws = Predictive(model, num_samples=4)(data, rule=rule)
    names = {"sigma", "w0", "weights", "choice"} | ({"rule.alpha", "rule.beta"} if rule else set())
    assert names <= set(draws)
    assert draws["weights"].shape == (4, 3, 15, 2)
    assert torch.equal(draws["weights"][:, :, 0], draws["w0"])
    assert set(draws["choice"].unique().tolist()) <= {0.0, 1.0}


def test_model_log_density_matches_hand_computation():
    rule = ReinforceBaseline()
    data = cohort(rule, n_trials=10)
    w = 0.3 * torch.randn(3, 10, 2)
    values = {"rule.alpha": torch.tensor([0.2, 0.1]), "rule.beta": torch.tensor(0.3),
              "sigma": torch.tensor([0.2, 0.1]), "w0": w[:, 0], "weights": w}
    trace = pyro.poutine.trace(pyro.condition(model, data=values)).get_trace(data, rule=rule,
                                                                              priors=DynamicsConfig(sigma_init=2.0))
    trace.compute_log_prob()
    z = (w * data.features).sum(-1)
    lik = (data.choice * z - torch.nn.functional.softplus(z)).sum()
    drift = rule.drift({"alpha": values["rule.alpha"], "beta": values["rule.beta"]}, w, data.features,
                       data.choice, data.reward, None)
    dyn = torch.distributions.Normal(w[:, :-1] + drift[:, :-1], values["sigma"]).log_prob(w[:, 1:]).sum()
    init = torch.distributions.Normal(0.0, 2.0).log_prob(w[:, 0]).sum()
    assert torch.allclose(trace.nodes["choice"]["log_prob"].sum(), lik)
    assert torch.allclose(trace.nodes["weights"]["log_prob"].sum(), dyn)
    assert torch.allclose(trace.nodes["w0"]["log_prob"].sum(), init)
