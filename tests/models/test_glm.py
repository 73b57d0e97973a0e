import math

import pytest
import torch

from learnrules.models.glm import bernoulli_log_likelihood, choice_probability, expected_log_likelihood, gauss_hermite


def test_choice_probability_and_log_likelihood_by_hand():
    w, x = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 2.0])
    p = choice_probability(w, x)
    assert math.isclose(float(p), 1 / (1 + math.exp(1.5)))
    ll = bernoulli_log_likelihood(torch.tensor([-1.5, -1.5]), torch.tensor([1.0, 0.0]),
                                  torch.tensor([True, False]))
    assert math.isclose(float(ll[0]), math.log(float(p)))
    assert float(ll[1]) == 0.0


def test_gauss_hermite_integrates_polynomials():
    nodes, weights = gauss_hermite(10)
    assert math.isclose(float(weights.sum()), 1.0)
    assert math.isclose(float((weights * nodes**2).sum()), 1.0)
    assert math.isclose(float((weights * nodes**4).sum()), 3.0)


@pytest.mark.parametrize("m,v", [(0.3, 0.0), (-1.0, 0.5), (2.0, 4.0), (0.0, 25.0)])
def test_expected_log_likelihood_matches_numerical_integration(m, v):
    choice = torch.tensor([1.0, 0.0])
    mean, var = torch.full((2,), m), torch.full((2,), v)
    value, d_mean, d_var = expected_log_likelihood(mean, var, choice, n_points=64)
    grid = torch.linspace(-12, 12, 200001)
    density = torch.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi) * (grid[1] - grid[0])
    z = m + math.sqrt(v) * grid
    for i, y in enumerate([1.0, 0.0]):
        ref = (density * (y * z - torch.nn.functional.softplus(z))).sum()
        assert abs(float(value[i] - ref)) < (1e-6 if v <= 4 else 1e-4)  # wide Gaussians need more nodes
    eps, tol = 1e-5, (1e-6 if v <= 4 else 1e-3)
    up, _, _ = expected_log_likelihood(mean + eps, var, choice, n_points=64)
    down, _, _ = expected_log_likelihood(mean - eps, var, choice, n_points=64)
    assert torch.allclose(d_mean, (up - down) / (2 * eps), atol=tol)
    if v > 0:
        up, _, _ = expected_log_likelihood(mean, var + eps, choice, n_points=64)
        down, _, _ = expected_log_likelihood(mean, var - eps, choice, n_points=64)
        assert torch.allclose(d_var, (up - down) / (2 * eps), atol=tol)
    assert torch.all(d_var <= 0)


def test_expected_log_likelihood_matches_monte_carlo():
    g = torch.Generator().manual_seed(1)
    z = 0.7 + 1.5 * torch.randn(400000, generator=g)
    mc = (1.0 * z - torch.nn.functional.softplus(z)).mean()
    value, _, _ = expected_log_likelihood(torch.tensor(0.7), torch.tensor(2.25), torch.tensor(1.0))
    assert abs(float(value - mc)) < 5e-3
