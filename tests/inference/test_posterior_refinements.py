"""The hyperparameters' spread in the weight bands, and the PSIS k of the weight posterior q(w)."""

import dataclasses

import numpy as np
import pytest
import torch

from learnrules.inference.variational.laplace import LaplacePosterior, weight_covariance
from learnrules.inference.variational.psis import KHAT_WARN, log_joint, weight_khat
from learnrules.inference.variational.vi import Hyper, update_posterior
from learnrules.other_rules import ZeroRule
from learnrules.synthetic.cohort import simulate_cohort


def test_weight_covariance_adds_the_hyperparameters_spread():
    jac = np.zeros((1, 3, 2, 1))
    jac[0, :, 0, 0] = [0.0, 1.0, 2.0]  # the first weight's mean moves with the hyperparameter, later trials more
    laplace = LaplacePosterior(np.array([[0.25]]), ("sigma[bias]",), np.zeros((1, 1)), {}, jac)
    base = np.broadcast_to(np.eye(2) * 0.1, (1, 3, 2, 2)).copy()
    total = weight_covariance(base, laplace)
    np.testing.assert_allclose(total[0, :, 0, 0], [0.1, 0.35, 1.1])
    np.testing.assert_allclose(total[0, :, 1, 1], 0.1)
    assert weight_covariance(base, laplace._replace(mean_jacobian=None)) is base


def _random_walk(n_trials: int, sigma: float):
    cohort = simulate_cohort(ZeroRule(), n_animals=2, n_trials=n_trials, sigma=sigma, seed=3, dtype=torch.float64)
    data = cohort.tensors().to(torch.float64)
    k = data.n_features
    hyper = Hyper(torch.full((k,), sigma, dtype=torch.float64), None, torch.full((k,), 4.0, dtype=torch.float64),
                  torch.zeros(2, k, dtype=torch.float64), {})
    return data, hyper


def test_log_joint_matches_a_hand_computed_two_trial_walk():
    data, hyper = _random_walk(2, 0.1)
    data = data.select([0])
    w = torch.tensor([[[0.2, -0.1], [0.25, 0.0]]], dtype=torch.float64)
    z = (data.features[0] * w[0]).sum(-1)
    sign = torch.where(data.choice[0] > 0.5, 1.0, -1.0)
    normal = torch.distributions.Normal
    expected = (torch.nn.functional.logsigmoid(sign * z).sum()
                + normal(w[0, 0], 0.1).log_prob(w[0, 1]).sum() + normal(0.0, 4.0).log_prob(w[0, 0]).sum())
    assert float(log_joint(ZeroRule(), hyper.select(slice(0, 1)), data, w)[0]) == pytest.approx(float(expected))


def test_weight_khat_passes_the_fitted_q_and_flags_a_shifted_one():
    data, hyper = _random_walk(400, 0.05)
    post = update_posterior(None, hyper, data, max_iter=50, tol=1e-12)
    khat = weight_khat(None, hyper, data, post, n_draws=400, seed=0)
    assert khat.shape == (2,)
    assert (khat < KHAT_WARN).all()
    shifted = dataclasses.replace(post, mean=post.mean + 0.5 * data.valid.unsqueeze(-1))
    assert (weight_khat(None, hyper, data, shifted, n_draws=400, seed=0) > KHAT_WARN).all()
