"""Simulated cohorts: many animals learning the IBL-like task with one rule, as trial tables plus ground truth."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule
from learnrules.synthetic.agent import coerce_params, simulate_agents, task_features
from learnrules.synthetic.population import draw_animal_params
from learnrules.synthetic.task import IBLTask

__all__ = ["SimulatedCohort", "simulate_cohort"]

logger = logging.getLogger(__name__)

DEFAULT_TASK = IBLTask()


@dataclass(frozen=True)
class SimulatedCohort:
    """A simulated cohort: the trial table and the ground truth that produced it.

    Parameters
    ----------
    table : pandas.DataFrame
        Canonical trial table, one row per trial: ``subject, session, trial, contrastLeft, contrastRight``
        (0 on the side without the stimulus), ``probabilityLeft, answer`` (1 = right), ``choice``
        (1 = right, 0 = left) and ``reward`` (1 / 0).
    weights : ndarray, shape (animals, T, K)
        True weights before each trial.
    updates : ndarray, shape (animals, T, K)
        True rule updates after each trial (without the noise).
    choice_prob : ndarray, shape (animals, T)
        True probability of choosing right.
    features : ndarray, shape (animals, T, K)
        The design matrix the agents saw.
    feature_names : tuple of str
    params : dict of str to ndarray
        Rule parameters used (with per-animal parameters: their population medians).
    rule : LearningRule
    sigma : ndarray, shape (K,)
        Per-trial noise sd of each weight.
    sigma_session : ndarray or None
        Noise sd at session starts (None: ``sigma``).
    seed : int or None
    task : IBLTask
    animal_params : dict of str to ndarray, or None
        Each animal's rule parameters, shape ``(animals, *shape)``, when they were drawn from a population
        (``simulate_cohort(population_sd=...)``); None when every animal used ``params``.
    """

    table: pd.DataFrame
    weights: np.ndarray
    updates: np.ndarray
    choice_prob: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    params: dict[str, np.ndarray]
    rule: LearningRule
    sigma: np.ndarray
    sigma_session: np.ndarray | None = None
    seed: int | None = None
    task: IBLTask = field(default_factory=IBLTask)
    animal_params: dict[str, np.ndarray] | None = None

    @property
    def subjects(self) -> tuple[str, ...]:
        """Subject names, in the order of the first axis of the arrays."""
        return tuple(dict.fromkeys(self.table["subject"].tolist()))

    def true_values(self) -> dict[str, np.ndarray]:
        """Return the ground truth by the names a fit reports: rule parameters, derived quantities, ``sigma``."""
        tensors = {name: torch.as_tensor(np.asarray(value, float)) for name, value in self.params.items()}
        derived = {name: value.numpy() for name, value in self.rule.derived(tensors).items()}
        return {**self.params, **derived, "sigma": self.sigma}

    def tensors(self, animals: Sequence[int] | None = None) -> CohortTensors:
        """Return the trials of the animals at ``animals`` (default all) as a fit's tensors, in the default dtype.

        Every trial is observed and fitted; a session starts at each session's trial 0.
        """
        n_animals, n_trials = self.weights.shape[:2]
        index = np.arange(n_animals) if animals is None else np.asarray(animals)
        dtype = torch.get_default_dtype()

        def grid(values: np.ndarray) -> np.ndarray:
            return values.reshape(n_animals, n_trials)[index]

        ones = torch.ones(len(index), n_trials, dtype=torch.bool)
        return CohortTensors(
            torch.as_tensor(self.features[index], dtype=dtype),
            torch.as_tensor(grid(self.table["choice"].to_numpy(float)), dtype=dtype),
            torch.as_tensor(grid(self.table["reward"].to_numpy(float)), dtype=dtype), ones, ones.clone(),
            torch.as_tensor(grid(self.table["trial"].to_numpy() == 0)), torch.full((len(index),), n_trials),
            self.feature_names, tuple(self.subjects[i] for i in index))

    def to_ibl_table(self) -> pd.DataFrame:
        """Return the trials in IBL ALF coding.

        ``choice`` -1 = right (counter-clockwise wheel turn), +1 = left; ``feedbackType`` +1 rewarded, -1 not;
        the contrast of the side without the stimulus is NaN (a 0% stimulus keeps 0 on its own side); no
        ``answer`` or ``reward`` columns.
        """
        t = self.table
        right = t["answer"].to_numpy() == 1
        return pd.DataFrame({
            "subject": t["subject"], "session": t["session"], "trial": t["trial"],
            "contrastLeft": np.where(right, np.nan, t["contrastLeft"].to_numpy()),
            "contrastRight": np.where(right, t["contrastRight"].to_numpy(), np.nan),
            "probabilityLeft": t["probabilityLeft"],
            "choice": np.where(t["choice"].to_numpy() == 1, -1, 1),
            "feedbackType": np.where(t["reward"].to_numpy() == 1, 1, -1),
        })


def _per_feature(value: float | Sequence[float] | np.ndarray, k: int, name: str) -> np.ndarray:
    out = np.asarray(value, dtype=float)
    try:
        out = np.broadcast_to(out, (k,)).copy()
    except ValueError:
        raise ValueError(f"{name} must be a scalar or have one value per feature ({k}), got {out.shape}") from None
    if name != "init_mean" and (out < 0).any():
        raise ValueError(f"{name} must be non-negative, got {out.tolist()}")
    return out


def _table(subjects: list[str], trials: list, choice: np.ndarray, reward: np.ndarray) -> pd.DataFrame:
    frames = [pd.DataFrame({
        "subject": subject, "session": tr.session, "trial": tr.trial, "contrastLeft": tr.contrast_left,
        "contrastRight": tr.contrast_right, "probabilityLeft": tr.probability_left,
        "answer": tr.answer.astype(np.int64), "choice": choice[i].astype(np.int64),
        "reward": reward[i].astype(np.int64), "rewardProbability": tr.reward_probability})
        for i, (subject, tr) in enumerate(zip(subjects, trials, strict=True))]
    return pd.concat(frames, ignore_index=True)


def simulate_cohort(rule: LearningRule, *, n_animals: int, n_trials: int,
                    params: Mapping[str, object] | None = None,
                    sigma: float | Sequence[float] = 0.0, sigma_session: float | Sequence[float] | None = None,
                    features: Sequence[str] = ("bias", "stimulus"), task: IBLTask = DEFAULT_TASK,
                    init_mean: float | Sequence[float] = 0.0, init_sd: float | Sequence[float] = 0.5,
                    seed: int | None = None, dtype: torch.dtype | None = None,
                    population_sd: float | Mapping[str, float] = 0.0) -> SimulatedCohort:
    """Simulate ``n_animals`` GLM agents learning the task with ``rule`` for ``n_trials`` trials each.

    Parameters
    ----------
    rule : LearningRule
        Any rule, including simulator-only ones (``fittable = False``).
    n_animals, n_trials : int
        Cohort size and trials per animal.
    params : Mapping, optional
        Rule parameters by name (floats or arrays of the declared shape); missing names take the declared
        defaults.
    sigma : float or sequence of float
        Per-trial noise sd of the weights (scalar or one per feature).
    sigma_session : float or sequence of float, optional
        Noise sd on the transition into the first trial of a session (None: ``sigma``).
    features : sequence of str
        Feature names: ``bias, stimulus, stimulus_left, stimulus_right, prev_choice, prev_reward,
        prev_answer`` (the design-matrix vocabulary of ``learnrules.behavior.features``).
    task : IBLTask
        Task configuration.
    init_mean, init_sd : float or sequence of float
        Initial weights are drawn per animal from ``N(init_mean, init_sd^2)``.
    seed : int, optional
        Seed of all randomness (task and agents).
    dtype : torch.dtype, optional
        Floating type of the simulation (default: torch's default dtype). Results for a seed are exactly
        reproducible for a given dtype.
    population_sd : float or Mapping of str to float
        Sd across animals of the rule parameters on their unconstrained scale (log scale for a rate), one value
        for all or by parameter name; each animal's parameters are drawn around ``params`` (the population
        medians, see :func:`~learnrules.synthetic.population.draw_animal_params`). 0: all animals share
        ``params``. The trials of a seed do not depend on it.

    Returns
    -------
    SimulatedCohort
    """
    if n_animals < 1 or n_trials < 1:
        raise ValueError(f"n_animals and n_trials must be positive, got {n_animals} and {n_trials}")
    names = tuple(features)
    k = len(names)
    dtype = dtype or torch.get_default_dtype()
    tensors = coerce_params(rule, params, k, dtype=dtype)
    sigma_arr = _per_feature(sigma, k, "sigma")
    session_arr = None if sigma_session is None else _per_feature(sigma_session, k, "sigma_session")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    trials = [task.generate(n_trials, rng) for _ in range(n_animals)]
    x = torch.as_tensor(np.stack([task_features(tr, names) for tr in trials]), dtype=dtype)
    answer = torch.as_tensor(np.stack([tr.answer for tr in trials]), dtype=dtype)
    opens = np.stack([np.concatenate([tr.trial[1:] == 0, [False]]) for tr in trials])  # t -> t+1 opens a session
    sd = np.where(opens[..., None], session_arr if session_arr is not None else sigma_arr, sigma_arr)
    mean, spread = _per_feature(init_mean, k, "init_mean"), _per_feature(init_sd, k, "init_sd")
    w0 = torch.as_tensor(mean, dtype=dtype) + torch.as_tensor(spread, dtype=dtype) * torch.randn(
        n_animals, k, generator=generator, dtype=dtype)
    paid = np.stack([tr.reward_probability for tr in trials])
    # drawn after the trials, so a seed's task is the same with and without a population
    heterogeneous = bool(population_sd) if not isinstance(population_sd, Mapping) else \
        any(v for v in population_sd.values())
    animal = draw_animal_params(rule, tensors, population_sd, n_animals, rng) if heterogeneous else None
    out = simulate_agents(rule, tensors if animal is None else animal, x, answer, w0,
                          torch.as_tensor(sd, dtype=dtype), generator, feature_names=names,
                          reward_probability=None if (paid == 1).all() else torch.as_tensor(paid, dtype=dtype))
    subjects = [f"sim{i:03d}" for i in range(n_animals)]
    table = _table(subjects, trials, out.choice.numpy(), out.reward.numpy())
    logger.info("simulated %d animals x %d trials with %s (accuracy %.3f)", n_animals, n_trials, rule.name,
                float((out.choice == answer).to(dtype).mean()))
    return SimulatedCohort(table=table, weights=out.weights.numpy(), updates=out.updates.numpy(),
                           choice_prob=out.choice_prob.numpy(), features=out.features.numpy(),
                           feature_names=names, params={n: v.numpy().copy() for n, v in tensors.items()},
                           rule=rule, sigma=sigma_arr, sigma_session=session_arr, seed=seed, task=task,
                           animal_params=None if animal is None else {n: v.numpy().copy() for n, v in animal.items()})
