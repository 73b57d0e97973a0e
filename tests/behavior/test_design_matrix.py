import numpy as np
import pandas as pd
import pytest

from learnrules.behavior import design_matrix, ibl_transform, load_trials


def small() -> pd.DataFrame:
    return pd.DataFrame({
        "subject": ["a"] * 4 + ["b"] * 2,
        "contrastLeft": [1.0, np.nan, 0.0625, np.nan, 0.25, np.nan],
        "contrastRight": [np.nan, 0.0625, np.nan, 0.0, np.nan, 1.0],
        "choice": [1, -1, 0, -1, 1, -1],
        "feedbackType": [1, 1, -1, -1, 1, 1],
        "tone": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    })


def test_ibl_transform_hand_values():
    assert ibl_transform(1.0) == pytest.approx(1.0, abs=1e-15)
    assert ibl_transform(0.0) == 0.0
    # tanh(0.3125) / tanh(5) = 0.3027097293 / 0.9999092043
    assert ibl_transform(0.0625) == pytest.approx(0.30273721658092784, rel=1e-12)


def test_features_by_name_and_covariate():
    data = load_trials(small(), nogo="missing", stimulus_columns=["tone"])
    dm = design_matrix(data, ["bias", "stimulus", "stimulus_left", "stimulus_right", "tone"])
    assert dm.names == ("bias", "stimulus", "stimulus_left", "stimulus_right", "tone")
    assert dm.subjects == ("a", "b")
    a = dm.blocks[0]
    g = 0.30273721658092784
    np.testing.assert_allclose(a[:, 0], 1.0)
    np.testing.assert_allclose(a[:, 1], [-1.0, g, -g, 0.0], atol=1e-15)
    np.testing.assert_allclose(a[:, 2], [1.0, 0.0, g, 0.0], atol=1e-15)
    np.testing.assert_allclose(a[:, 3], [0.0, g, 0.0, 0.0], atol=1e-15)
    np.testing.assert_array_equal(a[:, 4], [0.1, 0.2, 0.3, 0.4])
    assert dm.blocks[1].shape == (2, 5)
    assert not a.flags.writeable


def test_previous_trial_features():
    data = load_trials(small(), nogo="missing")
    dm = design_matrix(data, ["prev_choice", "prev_reward", "prev_answer"])
    a = dm.blocks[0]
    # a: choices left, right, no-go, right; rewards 1, 1, 0, 0; answers left, right, left, and left on
    # row 3 (zero contrast, unrewarded right choice -> left was correct).
    np.testing.assert_array_equal(a[:, 0], [0, -1, 1, 0])  # 0 on the first trial and after the no-go
    np.testing.assert_array_equal(a[:, 1], [0, 1, 1, 0])
    answer = data["a"].answer
    np.testing.assert_array_equal(answer, [0, 1, 0, 0])
    np.testing.assert_array_equal(a[:, 2], [0, -1, 1, -1])
    np.testing.assert_array_equal(dm.blocks[1][:, 0], [0, -1])


def test_unknown_and_duplicate_features():
    data = load_trials(small())
    with pytest.raises(ValueError, match="unknown feature 'contrast'"):
        design_matrix(data, ["bias", "contrast"])
    with pytest.raises(ValueError, match="duplicate feature names"):
        design_matrix(data, ["bias", "bias"])


def test_stimulus_needs_contrast_columns():
    data = load_trials(pd.DataFrame({"choice": [0, 1, 1], "reward": [1, 0, 1]}))
    with pytest.raises(ValueError, match="needs column 'contrast"):
        design_matrix(data, ["stimulus"])
    assert design_matrix(data, ["bias"]).blocks[0].shape == (3, 1)
