"""Checks at real data size: rat W053 against psytrack.hyperOpt (slow), parametric recovery 20 x 5000 (study)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.dynamics import DynamicsConfig

import fitting_helpers as helpers


@pytest.mark.slow
def test_w053_random_walk_matches_psytrack_hyperopt():
    from psytrack import hyperOpt

    data, raw = helpers.rat_w053()
    hyp, evd, w_mode, hess_info = hyperOpt(raw, {"sigInit": 2.0 ** 4, "sigma": [2.0 ** -4] * 3, "sigDay": None},
                                           {"bias": 1, "s1": 1, "s2": 1}, ["sigma"])
    res = fit(data, features=("bias", "s1", "s2"), config=FitConfig(dynamics=DynamicsConfig(sigma=2.0 ** -4)))
    ours = res.weights_mean[0].T
    assert min(np.corrcoef(ours[i], w_mode[i])[0, 1] for i in range(3)) >= 0.99
    ratio = res.sigma / np.asarray(hyp["sigma"])
    assert np.all((ratio < 1.5) & (ratio > 1 / 1.5))
    assert abs(res.elbo - evd) <= 0.005 * abs(evd)
    assert abs((res.weights_sd[0].T / hess_info["W_std"]).mean() - 1) <= 0.2


def _recovery(name):
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    try:
        import parametric_recovery
    finally:
        sys.path.pop(0)
    torch.set_default_dtype(torch.float64)
    return parametric_recovery.recover(name, 20, 5000), parametric_recovery.RATES


# The criterion, per fit: every truth inside its 90% interval, learning rates within 25%. Measured at
# seeds 0-19 (bench/results/parametric_recovery.md, 374/400 truths inside their 90% intervals): at seed 0
# ReinforceBaseline and DeltaRule each put one bias-weight rate just outside its interval (errors 21% and 24%;
# errors of the 20-seed means 0.5% and 6%), so those two are expected to fail here; AsymmetricReinforce, fitted
# as total rate alpha and omission share, meets it at seed 0 and at 14 of the other 19 seeds.
# bench/results/recovery_misses.md: the ADF filter's likelihood peaks at the fit's mode for both seed-0 misses
# (the truths cost 3.5 and 7.1 nats in these simulated data).
_NOT_MET = pytest.mark.xfail(strict=True, reason="issue 4 must-show 2 not met at seed 0; see the comment above")


@pytest.mark.study
@pytest.mark.parametrize("name", [pytest.param("ReinforceBaseline", marks=_NOT_MET), "AsymmetricReinforce",
                                  pytest.param("DeltaRule", marks=_NOT_MET)])
def test_parametric_recovery_20_animals_5000_trials(name):
    rows, rates = _recovery(name)
    for row in rows:
        assert row["lower"] <= row["true"] <= row["upper"], row
        if row["parameter"] in rates:
            assert row["rel_error"] < 0.25, row
