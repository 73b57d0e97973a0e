"""The IBL-like task: contrasts, sides, sessions, biased blocks, reward-probability blocks."""

import numpy as np
import pytest

from learnrules.synthetic import IBLTask


def test_unbiased_task_trials():
    task = IBLTask(session_length=100)
    tr = task.generate(1050, np.random.default_rng(0))
    assert set(np.unique(tr.contrast_left + tr.contrast_right)) <= set(task.contrasts)
    assert ((tr.contrast_left == 0) | (tr.contrast_right == 0)).all()
    assert (tr.contrast_right[tr.answer == 0] == 0).all() and (tr.contrast_left[tr.answer == 1] == 0).all()
    assert (tr.probability_left == 0.5).all()
    assert tr.session.max() == 10 and (tr.trial[tr.session == 10] == np.arange(50)).all()
    assert 0.45 < tr.answer.mean() < 0.55
    np.testing.assert_array_equal(tr.signed_contrast, tr.contrast_right - tr.contrast_left)


def test_biased_blocks():
    task = IBLTask(session_length=2000, biased_blocks=True)
    tr = task.generate(8000, np.random.default_rng(1))
    for s in range(4):
        prior = tr.probability_left[tr.session == s]
        assert (prior[:90] == 0.5).all()
        assert set(np.unique(prior[90:])) == {0.2, 0.8}
        changes = np.flatnonzero(np.diff(prior[90:])) + 1
        lengths = np.diff(np.concatenate([[0], changes]))
        assert lengths.min() >= 20 and lengths.max() <= 100
        assert 40 < lengths.mean() < 80
    for level in (0.2, 0.8):
        left = 1 - tr.answer[tr.probability_left == level]
        assert abs(left.mean() - level) < 0.03


def test_task_is_reproducible_and_validated():
    task = IBLTask(biased_blocks=True)
    a, b = task.generate(700, np.random.default_rng(5)), task.generate(700, np.random.default_rng(5))
    np.testing.assert_array_equal(a.contrast_left, b.contrast_left)
    np.testing.assert_array_equal(a.probability_left, b.probability_left)
    c = task.generate(700, np.random.default_rng(6))
    assert not np.array_equal(a.answer, c.answer)
    with pytest.raises(ValueError, match="contrasts"):
        IBLTask(contrasts=(0.0, 2.0))
    with pytest.raises(ValueError, match="session_length"):
        IBLTask(session_length=0)
    with pytest.raises(ValueError, match="reward_levels"):
        IBLTask(reward_levels=(1.0, 1.5))


def test_reward_blocks_cycle_in_blocks_and_leave_the_stimuli_as_they_were():
    plain = IBLTask(session_length=2000).generate(8000, np.random.default_rng(3))
    tr = IBLTask(session_length=2000, reward_levels=(1.0, 0.6, 0.3)).generate(8000, np.random.default_rng(3))
    assert (plain.reward_probability == 1).all()
    np.testing.assert_array_equal(tr.answer, plain.answer)  # reward blocks are drawn after everything else
    np.testing.assert_array_equal(tr.signed_contrast, plain.signed_contrast)
    firsts = set()
    for s in range(4):
        level = tr.reward_probability[tr.session == s]
        firsts.add(level[0])
        changes = np.flatnonzero(np.diff(level)) + 1
        lengths = np.diff(np.concatenate([[0], changes]))
        assert lengths.min() >= 20 and lengths.max() <= 100 and 40 < lengths.mean() < 80
        order = {1.0: 0, 0.6: 1, 0.3: 2}
        steps = [(order[b] - order[a]) % 3 for a, b in zip(level[changes - 1], level[changes], strict=True)]
        assert set(steps) == {1}  # each block moves to the next level
    assert len(firsts) > 1  # sessions open on a random level
