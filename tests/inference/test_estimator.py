
import numpy as np
import pytest
import torch
from sklearn.base import clone

from learnrules.inference.estimator import LearningRuleModel
from learnrules.inference.variational.fit import FitConfig

import fitting_helpers as helpers


def test_estimator_fit_predict_score():
    data, _ = helpers.simulate(None, {}, n_animals=2, n_trials=300, sigma=0.05, seed=3)
    est = LearningRuleModel(config=FitConfig(max_steps=20))
    assert not hasattr(est, "result_")
    with pytest.raises(ValueError, match="not fitted"):
        est.predict_proba(data)
    assert est.fit(data) is est
    proba = est.predict_proba(data)
    assert proba.shape == (600, 2) and np.allclose(proba.sum(1), 1)
    score = est.score(data)
    p = np.clip(proba[:, 1], 1e-12, 1)
    y = data.choice.reshape(-1).numpy()
    assert np.isclose(score, np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert score > np.log(0.5)  # better than chance on a stimulus-driven agent
    assert clone(est).get_params()["features"] == ("bias", "stimulus")
    other = helpers.simulate(None, {}, n_animals=1, n_trials=300, sigma=0.05, seed=3)[0]
    with pytest.raises(ValueError, match="fitted subjects"):
        est.score(other)
    assert torch.is_tensor(data.features)
