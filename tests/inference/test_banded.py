import math

import pytest
import torch

from learnrules.inference.variational.banded import BandedGaussianTrajectory, BlockTridiagonal, factor


def random_spd(n_batch, n_blocks, k, seed):
    """A random SPD block-tridiagonal matrix J = C C^T with C block lower bidiagonal."""
    g = torch.Generator().manual_seed(seed)
    c = torch.zeros(n_batch, n_blocks * k, n_blocks * k)
    for i in range(n_blocks):
        c[:, i * k:(i + 1) * k, i * k:(i + 1) * k] = 0.5 * torch.tril(torch.randn(n_batch, k, k, generator=g)) \
            + 2 * torch.eye(k)
        if i + 1 < n_blocks:
            c[:, (i + 1) * k:(i + 2) * k, i * k:(i + 1) * k] = 0.8 * torch.randn(n_batch, k, k, generator=g)
    dense = c @ c.mT
    diag = torch.stack([dense[:, i * k:(i + 1) * k, i * k:(i + 1) * k] for i in range(n_blocks)], 1)
    lower = torch.zeros(n_batch, n_blocks - 1, k, k)
    for i in range(n_blocks - 1):
        lower[:, i] = dense[:, (i + 1) * k:(i + 2) * k, i * k:(i + 1) * k]
    return BlockTridiagonal(diag, lower), dense


@pytest.mark.parametrize("n_blocks", [1, 2, 3, 4, 5, 8, 13, 64])
@pytest.mark.parametrize("k", [1, 3])
def test_solve_logdet_selected_inverse_match_dense(n_blocks, k):
    matrix, dense = random_spd(2, n_blocks, k, seed=n_blocks * 10 + k)
    assert torch.allclose(matrix.dense(), dense)
    f = factor(matrix)
    b = torch.randn(2, n_blocks, k)
    expected = torch.linalg.solve(dense, b.reshape(2, -1)).reshape(2, n_blocks, k)
    assert torch.allclose(f.solve(b), expected, atol=1e-9)
    assert torch.allclose(f.logdet(), torch.logdet(dense), atol=1e-9)
    cov = torch.linalg.inv(dense)
    diag, off = f.selected_inverse()
    for i in range(n_blocks):
        assert torch.allclose(diag[:, i], cov[:, i * k:(i + 1) * k, i * k:(i + 1) * k], atol=1e-9)
        if i + 1 < n_blocks:
            assert torch.allclose(off[:, i], cov[:, (i + 1) * k:(i + 2) * k, i * k:(i + 1) * k], atol=1e-9)


def test_matvec_and_quad_match_dense():
    matrix, dense = random_spd(3, 7, 2, seed=1)
    x = torch.randn(3, 7, 2)
    assert torch.allclose(matrix.matvec(x).reshape(3, -1), (dense @ x.reshape(3, -1, 1)).squeeze(-1))
    assert torch.allclose(matrix.quad(x), torch.einsum("bi,bij,bj->b", x.reshape(3, -1), dense, x.reshape(3, -1)))


def test_samples_have_the_right_covariance():
    matrix, dense = random_spd(1, 6, 2, seed=3)
    f = factor(matrix)
    eps = torch.randn(40000, 1, 6, 2, generator=torch.Generator().manual_seed(0))
    z = f.sample_centered(eps).reshape(40000, -1)
    emp = z.T @ z / z.shape[0]
    cov = torch.linalg.inv(dense[0])
    assert (emp - cov).abs().max() < 0.05 * cov.abs().max()


def test_distribution_log_prob_entropy_match_multivariate_normal():
    matrix, dense = random_spd(2, 5, 3, seed=4)
    loc = torch.randn(2, 5, 3)
    q = BandedGaussianTrajectory(loc, matrix)
    ref = torch.distributions.MultivariateNormal(loc.reshape(2, -1), precision_matrix=dense)
    value = q.rsample((4,))
    assert value.shape == (4, 2, 5, 3)
    assert torch.allclose(q.log_prob(value), ref.log_prob(value.reshape(4, 2, -1)), atol=1e-9)
    assert torch.allclose(q.entropy(), ref.entropy(), atol=1e-9)
    diag, _ = q.marginals()
    assert torch.allclose(diag[0, 2], torch.linalg.inv(dense[0])[6:9, 6:9], atol=1e-9)


def test_masked_padding_is_excluded():
    matrix, dense = random_spd(1, 4, 2, seed=5)
    k = 2
    diag = torch.cat([matrix.diag, torch.eye(k).expand(1, 2, k, k)], 1)
    lower = torch.cat([matrix.lower, torch.zeros(1, 2, k, k)], 1)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    q = BandedGaussianTrajectory(torch.zeros(1, 6, k), BlockTridiagonal(diag, lower), mask=mask)
    ref = torch.distributions.MultivariateNormal(torch.zeros(1, 8), precision_matrix=dense)
    assert torch.allclose(q.entropy(), ref.entropy())
    draw = q.rsample()
    assert torch.all(draw[:, 4:] == 0)
    assert torch.allclose(q.log_prob(draw), ref.log_prob(draw[:, :4].reshape(1, -1)))
    assert math.isfinite(float(q.log_prob(draw)))
