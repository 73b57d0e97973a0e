"""An IBL-like two-alternative forced-choice task: contrasts on a random side, optional biased blocks.

The International Brain Laboratory task (IBL et al., eLife 2021): a grating of contrast 0, 6.25, 12.5, 25,
50 or 100% appears on the left or the right; the animal turns a wheel to bring it to the centre and is
rewarded when it chose the stimulus side (on 0% trials the side is drawn but invisible). In the biased
version each session opens with a 90-trial unbiased block, then alternates blocks in which the stimulus
appears on the left with probability 0.8 or 0.2, with block lengths drawn from an exponential of mean 60
truncated to [20, 100] trials. Optionally a correct choice is rewarded only with a probability that switches
between levels in blocks (as in probabilistic-reward tasks), so the reward rate moves independently of what
the animal has learned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["IBLTask", "TaskTrials"]


@dataclass(frozen=True)
class TaskTrials:
    """The task side of a sequence of trials (everything except the animal's choices).

    Parameters
    ----------
    contrast_left, contrast_right : ndarray of float, shape (trials,)
        Contrast on each side in [0, 1], 0 on the side without the stimulus.
    answer : ndarray of float, shape (trials,)
        Side of the stimulus (the rewarded choice): 1 = right, 0 = left.
    probability_left : ndarray of float, shape (trials,)
        Prior probability that the stimulus is on the left (0.5, 0.2 or 0.8).
    session : ndarray of int, shape (trials,)
        Session index, 0-based.
    trial : ndarray of int, shape (trials,)
        Trial number within its session, 0-based.
    reward_probability : ndarray of float, shape (trials,)
        Probability that a correct choice is rewarded (errors never are).
    """

    contrast_left: np.ndarray
    contrast_right: np.ndarray
    answer: np.ndarray
    probability_left: np.ndarray
    session: np.ndarray
    trial: np.ndarray
    reward_probability: np.ndarray

    @property
    def signed_contrast(self) -> np.ndarray:
        """Return ``contrastRight - contrastLeft``."""
        return self.contrast_right - self.contrast_left


@dataclass(frozen=True)
class IBLTask:
    """Configuration of the IBL-like task.

    Parameters
    ----------
    contrasts : tuple of float
        Contrast levels, drawn uniformly on every trial.
    session_length : int
        Trials per session (the last session may be shorter).
    biased_blocks : bool
        Alternate probabilityLeft 0.2 / 0.8 blocks after an unbiased first block in each session; when
        False, probabilityLeft is 0.5 throughout.
    first_block_length : int
        Length of each session's unbiased first block.
    block_mean : float
        Mean of the exponential block-length distribution.
    block_range : tuple of int
        Block lengths are truncated to this inclusive range.
    bias_levels : tuple of float
        probabilityLeft of the two kinds of biased blocks.
    reward_levels : tuple of float
        Probability that a correct choice is rewarded. With several levels it cycles through them in blocks
        whose lengths are drawn like the side blocks' (``block_mean``, ``block_range``), from a random level
        at each session start, independently of the side blocks.
    """

    contrasts: tuple[float, ...] = (0.0, 0.0625, 0.125, 0.25, 0.5, 1.0)
    session_length: int = 500
    biased_blocks: bool = False
    first_block_length: int = 90
    block_mean: float = 60.0
    block_range: tuple[int, int] = (20, 100)
    bias_levels: tuple[float, float] = (0.2, 0.8)
    reward_levels: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.contrasts or min(self.contrasts) < 0 or max(self.contrasts) > 1:
            raise ValueError(f"contrasts must be a non-empty set of values in [0, 1], got {self.contrasts}")
        if self.session_length < 1:
            raise ValueError(f"session_length must be positive, got {self.session_length}")
        low, high = self.block_range
        if not 1 <= low <= high:
            raise ValueError(f"block_range must satisfy 1 <= low <= high, got {self.block_range}")
        if not self.reward_levels or min(self.reward_levels) < 0 or max(self.reward_levels) > 1:
            raise ValueError(f"reward_levels must be a non-empty set of values in [0, 1], got {self.reward_levels}")

    def _block_lengths(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` truncated-exponential block lengths by rejection."""
        low, high = self.block_range
        out = np.empty(0, dtype=np.int64)
        while len(out) < n:
            draw = np.ceil(rng.exponential(self.block_mean, size=2 * n + 8)).astype(np.int64)
            out = np.concatenate([out, draw[(draw >= low) & (draw <= high)]])
        return out[:n]

    def _session_prior(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """Return probabilityLeft for one session of ``length`` trials."""
        prior = np.full(length, 0.5)
        if not self.biased_blocks:
            return prior
        start = min(self.first_block_length, length)
        n_blocks = (length - start) // self.block_range[0] + 1
        lengths = self._block_lengths(rng, n_blocks)
        level = int(rng.integers(2))
        for size in lengths:
            if start >= length:
                break
            prior[start:start + size] = self.bias_levels[level]
            start += int(size)
            level = 1 - level
        return prior

    def _session_reward(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """Return the reward probability of a correct choice for one session of ``length`` trials."""
        levels = np.asarray(self.reward_levels, dtype=float)
        if len(levels) == 1:  # no draws: the other streams of a seed stay as they were before reward blocks
            return np.full(length, levels[0])
        sizes = self._block_lengths(rng, length // self.block_range[0] + 1)
        block = np.repeat(np.arange(len(sizes)), sizes)[:length]
        return levels[(int(rng.integers(len(levels))) + block) % len(levels)]

    def generate(self, n_trials: int, rng: np.random.Generator) -> TaskTrials:
        """Draw the stimuli and correct sides of ``n_trials`` consecutive trials.

        Parameters
        ----------
        n_trials : int
            Number of trials (split into sessions of ``session_length``).
        rng : numpy.random.Generator
            Source of randomness.

        Returns
        -------
        TaskTrials
        """
        if n_trials < 0:
            raise ValueError(f"n_trials must be non-negative, got {n_trials}")
        session = np.arange(n_trials) // self.session_length
        trial = np.arange(n_trials) % self.session_length
        prior = _by_session(self._session_prior, session, rng)
        answer = (rng.random(n_trials) >= prior).astype(float)  # stimulus on the left with probability prior
        contrast = np.asarray(self.contrasts, dtype=float)[rng.integers(len(self.contrasts), size=n_trials)]
        reward = _by_session(self._session_reward, session, rng)
        return TaskTrials(contrast_left=np.where(answer == 0, contrast, 0.0),
                          contrast_right=np.where(answer == 1, contrast, 0.0),
                          answer=answer, probability_left=prior, session=session, trial=trial,
                          reward_probability=reward)


def _by_session(make: Callable[[int, np.random.Generator], np.ndarray], session: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Concatenate ``make(length, rng)`` over the sessions, in order."""
    return np.concatenate([make(int(n), rng) for n in np.bincount(session)] or [np.zeros(0)])
