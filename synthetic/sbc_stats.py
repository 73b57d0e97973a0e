"""Statistics of simulation-based calibration: rank uniformity, ECDF bands, interval coverage.

- :func:`rank_chi2`: chi-square test of binned ranks against the uniform (Talts et al. 2018).
- :func:`ecdf_bands`: 95% simultaneous bands of the ECDF difference of ``n`` uniform ranks (Säilynoja, Bürkner
  & Vehtari 2022, by simulation: the pointwise level whose binomial intervals hold a whole uniform ECDF with the
  stated probability).
- :func:`ecdf_inside`: whether observed ranks stay inside those bands.
- :func:`coverage`: a share with its binomial standard error and its distance from the nominal level in SEs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.stats import binom, chisquare

__all__ = ["ECDFBands", "coverage", "ecdf_bands", "ecdf_difference", "ecdf_inside", "rank_chi2"]


def rank_chi2(ranks: np.ndarray, n_ranks: int, *, bins: int = 10) -> tuple[float, float]:
    """Return the chi-square statistic and p-value of ``ranks`` (in ``0 .. n_ranks - 1``) against uniform.

    ``bins`` must divide ``n_ranks`` so every bin holds as many possible ranks (else the uniform is not flat
    over the bins).
    """
    if n_ranks % bins:
        raise ValueError(f"bins ({bins}) must divide the number of possible ranks ({n_ranks})")
    counts = np.bincount(np.asarray(ranks, int) * bins // n_ranks, minlength=bins)
    stat, p = chisquare(counts)
    return float(stat), float(p)


class ECDFBands(NamedTuple):
    """Simultaneous bands of the ECDF difference at the points ``z`` (fractions of the rank range)."""

    z: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float


def ecdf_difference(ranks: np.ndarray, n_ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the points ``z = i / n_ranks`` (``i = 1 .. n_ranks - 1``) and ``ECDF(z) - z`` of the scaled ranks."""
    z = np.arange(1, n_ranks) / n_ranks
    ranks = np.asarray(ranks, int)
    ecdf = (ranks[None, :] < np.arange(1, n_ranks)[:, None]).mean(1)
    return z, ecdf - z


def ecdf_bands(n: int, n_ranks: int, *, level: float = 0.95, n_sims: int = 2000, seed: int = 0) -> ECDFBands:
    """Return the ``level`` simultaneous bands of the ECDF difference of ``n`` uniform ranks in ``0 .. n_ranks-1``.

    Simulates ``n_sims`` sets of uniform ranks; for each, the smallest two-sided pointwise binomial tail
    probability over the points; the pointwise level ``gamma`` is that minimum's ``1 - level`` quantile, so a
    uniform ECDF stays inside all the pointwise ``1 - gamma`` intervals with probability ``level``.
    """
    rng = np.random.default_rng(seed)
    z = np.arange(1, n_ranks) / n_ranks
    sims = rng.integers(0, n_ranks, size=(n_sims, n))
    counts = (sims[:, :, None] < np.arange(1, n_ranks)[None, None, :]).sum(1)  # (n_sims, points)
    tails = 2 * np.minimum(binom.cdf(counts, n, z), binom.sf(counts - 1, n, z))
    gamma = float(np.quantile(tails.min(1), 1 - level))
    lower = binom.ppf(gamma / 2, n, z) / n - z
    upper = binom.ppf(1 - gamma / 2, n, z) / n - z
    return ECDFBands(z, lower, upper, gamma)


def ecdf_inside(ranks: np.ndarray, bands: ECDFBands, n_ranks: int) -> bool:
    """Whether the ECDF difference of ``ranks`` stays inside ``bands`` at every point."""
    _, diff = ecdf_difference(ranks, n_ranks)
    return bool(((diff >= bands.lower - 1e-12) & (diff <= bands.upper + 1e-12)).all())


def coverage(inside: np.ndarray, nominal: float) -> tuple[float, float, float]:
    """Return the share of ``inside``, its binomial SE at the nominal level, and the share's distance in SEs."""
    inside = np.asarray(inside, bool)
    share = float(inside.mean())
    se = float(np.sqrt(nominal * (1 - nominal) / len(inside)))
    return share, se, (share - nominal) / se
