"""SBC statistics on exact posteriors and skewed ones; a small SBC of the random-walk fit (slow)."""

import numpy as np
import pandas as pd
import pytest

from learnrules.other_rules import ZeroRule
from learnrules.synthetic.sbc import SBCDesign, draw_truth, sbc_replicate
from learnrules.synthetic.sbc_stats import coverage, ecdf_bands, ecdf_inside, rank_chi2

N_DRAWS = 99


def _conjugate_ranks(n: int, *, sd_scale: float, seed: int) -> np.ndarray:
    """Ranks of mu ~ N(0, 1) among draws of the posterior after y ~ N(mu, 1), its sd scaled by ``sd_scale``."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal(n)
    y = mu + rng.standard_normal(n)
    draws = y[:, None] / 2 + sd_scale * np.sqrt(0.5) * rng.standard_normal((n, N_DRAWS))
    return (draws < mu[:, None]).sum(1)


def test_exact_posterior_passes_and_overconfident_one_fails():
    exact = _conjugate_ranks(400, sd_scale=1.0, seed=0)
    narrow = _conjugate_ranks(400, sd_scale=0.6, seed=0)
    bands = ecdf_bands(400, N_DRAWS + 1)
    assert rank_chi2(exact, N_DRAWS + 1)[1] > 0.01
    assert ecdf_inside(exact, bands, N_DRAWS + 1)
    assert rank_chi2(narrow, N_DRAWS + 1)[1] < 1e-4  # U-shaped ranks
    assert not ecdf_inside(narrow, bands, N_DRAWS + 1)


def test_ecdf_bands_hold_uniform_ranks_at_their_level():
    bands = ecdf_bands(100, 20, seed=1)
    rng = np.random.default_rng(2)
    held = np.mean([ecdf_inside(rng.integers(0, 20, 100), bands, 20) for _ in range(400)])
    assert 0.92 <= held <= 0.98
    assert 0 < bands.gamma < 0.05  # simultaneous: each point is tested at a stricter level than 5%


def test_rank_chi2_refuses_uneven_bins_and_coverage_counts():
    with pytest.raises(ValueError, match="divide"):
        rank_chi2(np.arange(10), 99, bins=10)
    share, se, dev = coverage(np.array([True] * 80 + [False] * 20), 0.9)
    assert share == 0.8 and se == pytest.approx(0.03) and dev == pytest.approx(-10 / 3)


def test_draw_truth_follows_the_stated_noise_range():
    design = SBCDesign(sigma_range=(0.01, 0.08))
    sigmas = np.array([draw_truth(ZeroRule(), design, np.random.default_rng(s))["sigma"] for s in range(200)])
    assert sigmas.min() >= 0.01 and sigmas.max() <= 0.08
    # log-uniform: the median of log sigma sits at the middle of the log range
    assert np.median(np.log(sigmas)) == pytest.approx(np.log(0.01 * 0.08) / 2, abs=0.15)


@pytest.mark.slow
def test_random_walk_sbc_subset_is_calibrated():
    design = SBCDesign(n_animals=2, n_trials=1000, n_draws=19)
    rows = pd.DataFrame([r for seed in range(40) for r in sbc_replicate(ZeroRule(), seed=seed, design=design)])
    params, bands = rows[rows["kind"] == "param"], rows[rows["kind"] == "band"]
    for entry, group in params.groupby("entry"):
        assert rank_chi2(group["rank"].to_numpy(), 20, bins=5)[1] > 0.001, entry
        share, se, _ = coverage(group["inside_90"].to_numpy(bool), 0.9)
        assert abs(share - 0.9) <= 3 * se, (entry, share)
        assert group["finite"].all()
    assert 0.8 <= bands["band_90"].mean() <= 0.97
