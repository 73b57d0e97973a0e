import numpy as np
import pytest

from learnrules.outputs import POSTERIOR_NC_BYTES, posterior_draws


def test_posterior_draws_honour_a_request_and_keep_posterior_nc_under_its_budget():
    assert posterior_draws(1_000_000, 3, requested=250) == 250
    assert posterior_draws(20_000, 3) == 100  # the rat: every draw fits
    sizes = np.geomspace(1e3, 1e8, 40).astype(int)
    draws = np.array([posterior_draws(int(n), 3) for n in sizes])
    assert (np.diff(draws) <= 0).all() and draws.min() == 10 and draws.max() == 100
    capped = (draws > 10) & (draws < 100)
    assert capped.any()
    # 4 K + 9 bytes per draw of a trial (float32 weights, float64 log-likelihood, int8 prediction)
    assert (draws[capped] * sizes[capped] * 21 <= POSTERIOR_NC_BYTES).all()
    assert ((draws[capped] + 1) * sizes[capped] * 21 > POSTERIOR_NC_BYTES).all()
    assert posterior_draws(1_000_000, 3) == pytest.approx(POSTERIOR_NC_BYTES / 21e6, abs=1)
