from dataclasses import replace

import pytest
import torch

from learnrules.inference.rollout.early_stopping import early_stop_index, holdout_sessions
from learnrules.other_rules import Reinforce
from learnrules.synthetic import IBLTask, simulate_cohort


def simulated(session_length):
    """12 REINFORCE animals x 400 trials in sessions of ``session_length`` trials."""
    torch.set_default_dtype(torch.float64)
    return simulate_cohort(Reinforce(), n_animals=12, n_trials=400, params={"alpha": [0.1, 0.1]},
                           task=IBLTask(session_length=session_length), seed=3).tensors()


def test_holdout_sessions_are_whole_later_sessions_or_blocks():
    cohort = simulated(500)  # one session of 400 trials per animal: five blocks of 80
    held = holdout_sessions(cohort, seed=0)
    blocks = held.reshape(12, 5, 80)
    assert (blocks.all(-1) | ~blocks.any(-1)).all()  # whole blocks
    assert (blocks.all(-1).sum(1) == 1).all() and not blocks[:, 0].any()  # one of five, never the first
    sessions = simulated(20)  # 20 sessions: 4 held out
    held = holdout_sessions(sessions, seed=1).reshape(12, 20, 20)
    assert (held.all(-1) | ~held.any(-1)).all() and (held.all(-1).sum(1) == 4).all() and not held[:, 0].any()
    assert torch.equal(held, holdout_sessions(sessions, seed=1).reshape(12, 20, 20))
    assert not torch.equal(held, holdout_sessions(sessions, seed=2).reshape(12, 20, 20))
    masked = replace(sessions, observed=sessions.observed & ~((torch.arange(400) >= 20) & (torch.arange(400) < 220)))
    held = holdout_sessions(masked, seed=1).reshape(12, 20, 20)  # sessions 1-10 have no choice to score
    assert not held[:, :11].any() and (held.all(-1).sum(1) == 2).all()  # 20% of the ten with one
    cv = replace(sessions, held_out=(torch.arange(400) >= 20) & (torch.arange(400) < 220))  # already held out
    assert torch.equal(holdout_sessions(cv, seed=1).reshape(12, 20, 20), held)
    with pytest.raises(ValueError, match="fraction"):
        holdout_sessions(cohort, fraction=1.0)


def test_early_stop_index_counts_evaluations_since_the_best_after_the_warmup():
    assert early_stop_index([1.0, 2.0, 1.5, 1.9, 1.0], patience=3) == 4
    assert early_stop_index([1.0, 0.0, 0.0, 2.0, 0.0, 0.0], patience=3) is None  # a new best restarts the count
    assert early_stop_index([1.0, 1.0, 1.0], patience=2) == 2  # a tie is no improvement
    # evaluated at epochs 1, 3, 5, 7, 9, 11: those at 1-5 are in the warm-up of 6 epochs and do not count
    falling = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert early_stop_index(falling, patience=2, eval_every=2, warmup_epochs=6) == 4
    assert early_stop_index(falling, patience=2, eval_every=2) == 2
