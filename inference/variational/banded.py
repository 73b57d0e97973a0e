"""Gaussians over weight trajectories with block-tridiagonal precision, factored by cyclic reduction.

A trajectory ``w`` of shape ``(T, K)`` whose precision ``J`` is block tridiagonal (``K x K`` blocks ``D_t`` on
the diagonal and ``B_t = J[t+1, t]`` below it) is, in trial-major order, a banded matrix of bandwidth
``2K - 1``. We factor it by *odd-even cyclic reduction*: eliminating the odd blocks leaves a block-tridiagonal
Schur complement on the even blocks with half as many blocks, and so on. This is a Cholesky factorization in
odd-even ordering (stable for SPD matrices), costs ``O(T K^3)`` like ``scipy.linalg.cholesky_banded`` and,
unlike a sequential block-Thomas sweep, runs every level as one batched tensor operation over animals and
trials (``log2 T`` levels), so no Python loop over trials is needed.

The factor gives solves, the log-determinant, ``rsample`` and the *selected inverse*: the diagonal covariance
blocks ``Cov(w_t)`` and the first off-diagonal blocks ``Cov(w_{t+1}, w_t)``, which are all the ELBO of a
Markov model needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints

__all__ = ["BlockTridiagonal", "BandedFactor", "BandedGaussianTrajectory", "factor"]


def _mT(x: Tensor) -> Tensor:
    return x.transpose(-1, -2)


def _mv(a: Tensor, v: Tensor) -> Tensor:
    return (a @ v.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class BlockTridiagonal:
    """A batch of symmetric block-tridiagonal matrices.

    Parameters
    ----------
    diag : Tensor, shape (*batch, T, K, K)
        Diagonal blocks ``J[t, t]``.
    lower : Tensor, shape (*batch, T - 1, K, K)
        Sub-diagonal blocks ``J[t + 1, t]``.
    """

    diag: Tensor
    lower: Tensor

    def matvec(self, x: Tensor) -> Tensor:
        """Return ``J x`` for ``x`` of shape ``(*batch, T, K)``."""
        out = _mv(self.diag, x)
        out[..., 1:, :] += _mv(self.lower, x[..., :-1, :])
        out[..., :-1, :] += _mv(_mT(self.lower), x[..., 1:, :])
        return out

    def quad(self, x: Tensor) -> Tensor:
        """Return ``x^T J x`` per batch element."""
        return (x * self.matvec(x)).sum((-1, -2))

    def dense(self) -> Tensor:
        """Return the dense ``(*batch, T K, T K)`` matrix (for tests and tiny problems)."""
        *batch, t, k, _ = self.diag.shape
        out = self.diag.new_zeros(*batch, t * k, t * k)
        for i in range(t):
            out[..., i * k:(i + 1) * k, i * k:(i + 1) * k] = self.diag[..., i, :, :]
            if i + 1 < t:
                out[..., (i + 1) * k:(i + 2) * k, i * k:(i + 1) * k] = self.lower[..., i, :, :]
                out[..., i * k:(i + 1) * k, (i + 1) * k:(i + 2) * k] = _mT(self.lower[..., i, :, :])
        return out


@dataclass(frozen=True)
class _Level:
    chol: Tensor  # Cholesky factors of the odd diagonal blocks, (*batch, m, K, K)
    inv: Tensor  # their inverses
    left: Tensor  # J[i, i-1] for odd i
    right: Tensor  # J[i+1, i] for odd i (so J[i, i+1] = right^T)
    n: int  # number of blocks at this level (odd, padded)


def _pad_odd(diag: Tensor, lower: Tensor) -> tuple[Tensor, Tensor]:
    """Append one decoupled identity block when the number of blocks is even."""
    if diag.shape[-3] % 2 == 1:
        return diag, lower
    k = diag.shape[-1]
    eye = torch.eye(k, dtype=diag.dtype, device=diag.device).expand(*diag.shape[:-3], 1, k, k)
    zero = lower.new_zeros(*lower.shape[:-3], 1, k, k)
    return torch.cat([diag, eye], -3), torch.cat([lower, zero], -3)


class BandedFactor:
    """Cyclic-reduction Cholesky factor of a batch of SPD block-tridiagonal matrices.

    Parameters
    ----------
    matrix : BlockTridiagonal
        The precision matrices to factor.

    Raises
    ------
    torch.linalg.LinAlgError
        If a matrix is not positive definite.
    """

    def __init__(self, matrix: BlockTridiagonal) -> None:
        self.n_blocks = matrix.diag.shape[-3]
        self.levels: list[_Level] = []
        diag, lower = _pad_odd(matrix.diag, matrix.lower)
        while diag.shape[-3] > 3:
            n = diag.shape[-3]
            chol = torch.linalg.cholesky(diag[..., 1::2, :, :])
            inv = torch.linalg.inv(diag[..., 1::2, :, :])
            left, right = lower[..., 0::2, :, :], lower[..., 1::2, :, :]
            self.levels.append(_Level(chol, inv, left, right, n))
            new_diag = diag[..., 0::2, :, :].clone()
            new_diag[..., 1:, :, :] -= right @ inv @ _mT(right)
            new_diag[..., :-1, :, :] -= _mT(left) @ inv @ left
            new_lower = -(right @ inv @ left)
            diag, lower = _pad_odd(new_diag, new_lower)
        # The last <= 3 blocks are factored densely.
        self.root_blocks = diag.shape[-3]
        self.root = torch.linalg.cholesky(BlockTridiagonal(diag, lower).dense())
        self.root_inv = torch.cholesky_inverse(self.root)

    def logdet(self) -> Tensor:
        """Return ``log det J`` per batch element."""
        total = 2 * self.root.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        for level in self.levels:
            total = total + 2 * level.chol.diagonal(dim1=-2, dim2=-1).log().sum((-1, -2))
        return total

    def solve(self, rhs: Tensor) -> Tensor:
        """Return ``J^{-1} b`` for ``b`` of shape ``(*batch, T, K)``."""
        pending = []
        b = rhs
        for level in self.levels:
            b = self._pad_vec(b, level.n)
            odd = _mv(level.inv, b[..., 1::2, :])
            reduced = b[..., 0::2, :].clone()
            reduced[..., 1:, :] -= _mv(level.right, odd)
            reduced[..., :-1, :] -= _mv(_mT(level.left), odd)
            pending.append(b[..., 1::2, :])
            b = reduced
        b = self._pad_vec(b, self.root_blocks)
        x = self._unflat(_mv(self.root_inv, b.flatten(-2)))
        for level, b_odd in zip(reversed(self.levels), reversed(pending), strict=True):
            x = self._expand(level, x, _mv(level.inv, b_odd))
        return x[..., :self.n_blocks, :]

    def sample_centered(self, eps: Tensor) -> Tensor:
        """Map standard normal ``eps`` of shape ``(*sample, *batch, T, K)`` to draws from ``N(0, J^{-1})``."""
        noises, e = [], eps
        for level in self.levels:
            e = self._pad_vec(e, level.n)
            noises.append(e[..., 1::2, :])
            e = e[..., 0::2, :]
        e = self._pad_vec(e, self.root_blocks)
        x = torch.linalg.solve_triangular(_mT(self.root), e.flatten(-2).unsqueeze(-1), upper=True)
        x = self._unflat(x.squeeze(-1))
        for level, noise in zip(reversed(self.levels), reversed(noises), strict=True):
            own = torch.linalg.solve_triangular(_mT(level.chol), noise.unsqueeze(-1), upper=True).squeeze(-1)
            x = self._expand(level, x, own)
        return x[..., :self.n_blocks, :]

    def _unflat(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.root_blocks, -1))

    @staticmethod
    def _pad_vec(b: Tensor, n: int) -> Tensor:
        if b.shape[-2] == n:
            return b
        return torch.cat([b, b.new_zeros(*b.shape[:-2], n - b.shape[-2], b.shape[-1])], -2)

    @staticmethod
    def _expand(level: _Level, x_even: Tensor, base: Tensor) -> Tensor:
        """Interleave evens with odds ``base - D_o^{-1}(J[i,i-1] x_{i-1} + J[i,i+1] x_{i+1})``."""
        x_even = x_even[..., :(level.n + 1) // 2, :]  # drop the next level's padding block
        coupling = _mv(level.left, x_even[..., :-1, :]) + _mv(_mT(level.right), x_even[..., 1:, :])
        odd = base - _mv(level.inv, coupling)
        out = x_even.new_zeros(*x_even.shape[:-2], level.n, x_even.shape[-1])
        out[..., 0::2, :] = x_even
        out[..., 1::2, :] = odd
        return out

    def selected_inverse(self) -> tuple[Tensor, Tensor]:
        """Return the covariance blocks ``Cov(w_t)`` (T, K, K) and ``Cov(w_{t+1}, w_t)`` (T - 1, K, K)."""
        n, k = self.root_blocks, self.root_inv.shape[-1] // self.root_blocks
        full = self.root_inv.unflatten(-1, (n, k)).unflatten(-3, (n, k)).transpose(-3, -2)  # (..., n, n, k, k)
        diag = torch.stack([full[..., i, i, :, :] for i in range(n)], -3)
        off = full.new_zeros(*full.shape[:-4], n - 1, k, k)
        for i in range(n - 1):
            off[..., i, :, :] = full[..., i + 1, i, :, :]
        for level in reversed(self.levels):
            inv, left, right_t = level.inv, level.left, _mT(level.right)
            m = (level.n + 1) // 2
            diag, off = diag[..., :m, :, :], off[..., :m - 1, :, :]
            # Sigma[i, i-1] and Sigma[i, i+1] for odd i, from the even blocks' selected inverse.
            to_left = -inv @ (left @ diag[..., :-1, :, :] + right_t @ off)
            to_right = -inv @ (left @ _mT(off) + right_t @ diag[..., 1:, :, :])
            odd = inv - inv @ (left @ _mT(to_left) + right_t @ _mT(to_right))
            odd = 0.5 * (odd + _mT(odd))
            new_diag = diag.new_zeros(*diag.shape[:-3], level.n, k, k)
            new_diag[..., 0::2, :, :] = diag
            new_diag[..., 1::2, :, :] = odd
            new_off = diag.new_zeros(*diag.shape[:-3], level.n - 1, k, k)
            new_off[..., 0::2, :, :] = to_left
            new_off[..., 1::2, :, :] = _mT(to_right)
            diag, off = new_diag, new_off
        return diag[..., :self.n_blocks, :, :], off[..., :self.n_blocks - 1, :, :]


def factor(matrix: BlockTridiagonal) -> BandedFactor:
    """Factor a batch of SPD block-tridiagonal matrices (see :class:`BandedFactor`)."""
    return BandedFactor(matrix)


class BandedGaussianTrajectory(dist.TorchDistribution):
    """Gaussian over ``(T, K)`` trajectories with block-tridiagonal precision (a Pyro distribution).

    Parameters
    ----------
    loc : Tensor, shape (*batch, T, K)
        Mean trajectory.
    precision : BlockTridiagonal
        Precision with batch shape ``batch``.
    mask : Tensor of bool, shape (*batch, T), optional
        True on real trials. Padded trials must carry decoupled identity precision blocks; they are excluded
        from ``log_prob`` and ``entropy`` and their draws are set to zero.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, loc: Tensor, precision: BlockTridiagonal, *, mask: Tensor | None = None,
                 validate_args: bool | None = None) -> None:
        self.loc, self.precision = loc, precision
        self.mask = torch.ones(loc.shape[:-1], dtype=torch.bool) if mask is None else mask
        self._factor = factor(precision)
        super().__init__(loc.shape[:-2], loc.shape[-2:], validate_args=validate_args)

    @property
    def factor(self) -> BandedFactor:
        """The cyclic-reduction factor of the precision."""
        return self._factor

    @property
    def mean(self) -> Tensor:
        """Mean trajectory."""
        return self.loc

    def _n_dims(self) -> Tensor:
        return self.mask.sum(-1).to(self.loc.dtype) * self.loc.shape[-1]

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """Draw reparameterized trajectories through the banded factor."""
        eps = torch.randn(*sample_shape, *self.loc.shape, dtype=self.loc.dtype, device=self.loc.device)
        draw = self.loc + self._factor.sample_centered(eps)
        return draw * self.mask.unsqueeze(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of trajectories (padded trials excluded)."""
        delta = (value - self.loc) * self.mask.unsqueeze(-1)
        quad = (delta * self.precision.matvec(delta)).sum((-1, -2))
        return -0.5 * quad + 0.5 * self._factor.logdet() - 0.5 * self._n_dims() * math.log(2 * math.pi)

    def entropy(self) -> Tensor:
        """Differential entropy ``n/2 (1 + log 2 pi) - 1/2 log det J``."""
        return 0.5 * self._n_dims() * (1 + math.log(2 * math.pi)) - 0.5 * self._factor.logdet()

    def marginals(self) -> tuple[Tensor, Tensor]:
        """Return ``Cov(w_t)`` and ``Cov(w_{t+1}, w_t)`` blocks (the selected inverse)."""
        return self._factor.selected_inverse()
