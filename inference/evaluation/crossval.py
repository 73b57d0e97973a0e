"""Cross-validation of learning rules by held-out predictive log-likelihood, and the comparison table.

Two schemes:

- held-out animals (Liu, Geadah & Pillow 2025): the animals are shuffled (seeded) and split into ``k`` folds;
  each rule is fitted to the other folds' animals and scores the held-out animals, whose initial weights the
  fitted predictor must itself supply (e.g. the population mean, with its spread as prior);
- held-out sessions: each animal's sessions are shuffled (seeded) and dealt into ``k`` folds; the rule is
  fitted to all animals with the held-out sessions' trials *held out* (:func:`hold_out_trials`: no
  likelihood term, but their choices still move the weights, as they will when the full data are scored),
  then scores the full data with the score restricted to the held-out sessions. So fit and score follow
  the same trajectory; masking the choices instead (:func:`mask_trials`) would stop the rule from learning
  in the held-out sessions while fitting but not while scoring.

The caller supplies, per rule name, a ``fit_fn(train: TrialData) -> Predictor`` (which must leave the
trials marked ``held_out`` out of its likelihood, as every fit of learnrules does) where ``Predictor`` has
``score(test: TrialData) -> PredictiveScore``; :class:`RulePredictor` is a ready-made predictor for a rule
with known parameters (an oracle, or the output of any fit).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from learnrules.behavior.trials import AnimalTrials, TrialData
from learnrules.inference.evaluation.evaluate import PredictiveScore, particle_filter_loglik, rollout_loglik
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule

__all__ = ["CV_COLUMNS", "Fold", "Predictor", "RulePredictor", "animal_folds", "session_folds", "mask_trials",
           "hold_out_trials", "cross_validate", "compare_table", "score_fold"]

logger = logging.getLogger(__name__)


class Predictor(Protocol):
    """Anything that scores held-out trials."""

    def score(self, test: TrialData) -> PredictiveScore:
        """Return the one-step-ahead predictive score of ``test``."""


@dataclass(frozen=True)
class Fold:
    """One train/test split.

    Parameters
    ----------
    index : int
        Fold number.
    train, test : TrialData
        Data to fit on and data to score.
    score_mask : Mapping[str, ndarray of bool], optional
        Per test subject, the trials that count in the score (None: all observed trials).
    """

    index: int
    train: TrialData
    test: TrialData
    score_mask: Mapping[str, np.ndarray] | None = None


def animal_folds(data: TrialData, *, k: int = 5, seed: int | None = 0) -> list[Fold]:
    """Split the animals into ``k`` folds (shuffled with ``seed``); each fold holds its animals out."""
    if not 2 <= k <= data.n_animals:
        raise ValueError(f"k must be between 2 and the number of animals ({data.n_animals}), got {k}")
    order = np.random.default_rng(seed).permutation(data.n_animals)
    folds = []
    for i, held in enumerate(np.array_split(order, k)):
        test = [data.subjects[j] for j in sorted(held)]
        train = [s for s in data.subjects if s not in test]
        folds.append(Fold(i, data.select(train), data.select(test)))
    return folds


def _subject_mask(animal: AnimalTrials, masks: Mapping[str, np.ndarray]) -> np.ndarray:
    mask = np.asarray(masks.get(animal.subject, np.zeros(animal.n_trials, bool)), dtype=bool)
    if mask.shape != (animal.n_trials,):
        raise ValueError(f"mask of subject {animal.subject!r} has shape {mask.shape}, expected ({animal.n_trials},)")
    return mask


def mask_trials(data: TrialData, masks: Mapping[str, np.ndarray]) -> TrialData:
    """Return a copy of ``data`` whose choices are missing (NaN) where ``masks[subject]`` is True."""
    animals = [replace(a, choice=np.where(_subject_mask(a, masks), np.nan, a.choice)) for a in data]
    return TrialData(tuple(animals), data.choice_coding, data.n_nogo_dropped)


def hold_out_trials(data: TrialData, masks: Mapping[str, np.ndarray]) -> TrialData:
    """Return a copy of ``data`` whose trials are held out of fitting where ``masks[subject]`` is True.

    The choices stay: a learning rule still updates on them (the trials' ``held_out`` flag only drops their
    likelihood terms), so a fit sees the same history as the later scoring of those trials.
    """
    animals = [replace(a, held_out=a.held_out | _subject_mask(a, masks)) for a in data]
    return TrialData(tuple(animals), data.choice_coding, data.n_nogo_dropped)


def session_folds(data: TrialData, *, k: int = 5, seed: int | None = 0) -> list[Fold]:
    """Deal each animal's sessions (shuffled with ``seed``) into ``k`` folds.

    Fold ``i`` trains on ``data`` with its held-out sessions held out of fitting (:func:`hold_out_trials`)
    and scores the data on exactly those sessions' observed trials. An animal with fewer than ``k``
    sessions has no held-out session in some folds.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    rng = np.random.default_rng(seed)
    assignment = {}
    for animal in data:
        sessions = rng.permutation(np.unique(animal.session))
        assignment[animal.subject] = {int(s): j % k for j, s in enumerate(sessions)}
    folds = []
    for i in range(k):
        masks = {a.subject: np.array([assignment[a.subject][int(s)] == i for s in a.session], dtype=bool)
                 for a in data}
        folds.append(Fold(i, hold_out_trials(data, masks), data, masks))
    return folds


def _padded_mask(score: PredictiveScore, masks: Mapping[str, np.ndarray]) -> np.ndarray:
    out = np.zeros_like(score.scored)
    for row, subject in enumerate(score.subjects):
        mask = np.asarray(masks[subject], dtype=bool)
        out[row, :len(mask)] = mask
    return out


def cross_validate(data: TrialData, rules: Mapping[str, Callable[[TrialData], Predictor]], *,
                   folds: Sequence[Fold] | None = None, scheme: Literal["animals", "sessions"] = "animals",
                   k: int = 5, seed: int | None = 0) -> pd.DataFrame:
    """Fit every rule on each fold's training data and score its test data.

    Parameters
    ----------
    data : TrialData
        All animals.
    rules : Mapping[str, Callable[[TrialData], Predictor]]
        Rule name -> fit function returning a predictor.
    folds : sequence of Fold, optional
        Precomputed folds (overrides ``scheme``, ``k``, ``seed``).
    scheme : {"animals", "sessions"}
        Held-out animals (:func:`animal_folds`) or held-out sessions (:func:`session_folds`).
    k : int
        Number of folds.
    seed : int, optional
        Seed of the fold assignment.

    Returns
    -------
    pandas.DataFrame
        One row per rule, fold and test animal: ``rule, fold, subject, loglik, nats_per_trial,
        bits_per_trial, accuracy, n_trials, mc_se``.
    """
    if folds is None:
        folds = animal_folds(data, k=k, seed=seed) if scheme == "animals" else session_folds(data, k=k, seed=seed)
    rows = [score_fold(fit_fn(fold.train), fold, name) for fold in folds for name, fit_fn in rules.items()]
    return pd.concat(rows, ignore_index=True)[CV_COLUMNS]


CV_COLUMNS = ["rule", "fold", "subject", "loglik", "nats_per_trial", "bits_per_trial", "accuracy", "n_trials", "mc_se"]


def score_fold(predictor: Predictor, fold: Fold, name: str) -> pd.DataFrame:
    """Score ``fold``'s test data with a predictor fitted to its training data: the rows of :func:`cross_validate`.

    Only the trials of the fold's ``score_mask`` count; animals with no scored trial get no row.
    """
    score = predictor.score(fold.test)
    if fold.score_mask is not None:
        score = score.restrict(_padded_mask(score, fold.score_mask))
    table = score.per_animal().assign(rule=name, fold=fold.index)
    logger.info("fold %d, %s: %.4f nats/trial", fold.index, name, score.nats_per_trial)
    return table[table["n_trials"] > 0][CV_COLUMNS]


def _per_animal(cv: pd.DataFrame) -> pd.DataFrame:
    """Pool each animal's folds: trial-weighted nats per trial and accuracy, wide over rules."""
    g = cv.assign(hits=cv["accuracy"] * cv["n_trials"]).groupby(["rule", "subject"], sort=False)
    pooled = g[["loglik", "hits", "n_trials"]].sum()
    pooled["nats"] = pooled["loglik"] / pooled["n_trials"]
    pooled["acc"] = pooled["hits"] / pooled["n_trials"]
    return pooled.reset_index()


def _paired_p(a: np.ndarray, b: np.ndarray, test: str) -> float:
    diff = a - b
    if len(diff) < 2 or np.allclose(diff, 0.0):
        return float("nan")
    with warnings.catch_warnings():  # near-constant differences make scipy warn about precision
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(a, b) if test == "ttest" else stats.wilcoxon(a, b)
    return float(result.pvalue)


def compare_table(cv: pd.DataFrame, *, test: Literal["ttest", "wilcoxon"] = "ttest") -> pd.DataFrame:
    """Summarize a cross-validation table per rule, ranked by held-out log-likelihood.

    Each animal's folds are pooled first (trial-weighted), then averaged across animals.

    Parameters
    ----------
    cv : pandas.DataFrame
        Output of :func:`cross_validate`.
    test : {"ttest", "wilcoxon"}
        Paired test across animals of each rule against the best (``scipy.stats.ttest_rel`` / ``wilcoxon``).

    Returns
    -------
    pandas.DataFrame
        One row per rule, best first: ``rule, rank, n_animals, nats_per_trial, se, bits_per_trial, bits_se,
        accuracy, accuracy_se, diff_vs_best, diff_se, p_value, within_1se``. ``diff_vs_best`` is the mean
        paired difference to the best rule (<= 0), ``diff_se`` its standard error across animals, and
        ``within_1se`` says whether ``diff_vs_best >= -diff_se``. ``se_across`` is ``"animals"``, or
        ``"folds"`` for a single animal: then standard errors and tests pair the rules across its folds
        (``n_animals`` is then 1).
    """
    pooled, unit = _per_animal(cv), "animals"
    if pooled["subject"].nunique() < 2 and cv["fold"].nunique() > 1:  # one animal: paired across its folds
        pooled, unit = _per_animal(cv.assign(subject=cv["fold"].astype(str))), "folds"
    nats = pooled.pivot(index="subject", columns="rule", values="nats")
    acc = pooled.pivot(index="subject", columns="rule", values="acc")
    n = nats.notna().sum()
    mean, se = nats.mean(), nats.std(ddof=1) / np.sqrt(n)
    best = str(mean.idxmax())
    rows = []
    for rule in nats.columns:
        paired = nats[list(dict.fromkeys([rule, best]))].dropna()
        diff = paired[rule] - paired[best]
        rows.append({"rule": rule, "n_animals": int(n[rule]) if unit == "animals" else 1,
                     "nats_per_trial": mean[rule], "se": se[rule],
                     "bits_per_trial": mean[rule] / math.log(2.0), "bits_se": se[rule] / math.log(2.0),
                     "accuracy": acc[rule].mean(), "accuracy_se": acc[rule].std(ddof=1) / np.sqrt(n[rule]),
                     "diff_vs_best": diff.mean(),
                     "diff_se": diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan"),
                     "p_value": _paired_p(paired[rule].to_numpy(), paired[best].to_numpy(), test)})
    out = pd.DataFrame(rows).sort_values("nats_per_trial", ascending=False, ignore_index=True)
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    out["within_1se"] = (out["diff_vs_best"] >= -out["diff_se"].fillna(0.0)) | (out["rank"] == 1)
    out["se_across"] = unit
    return out


@dataclass(frozen=True)
class RulePredictor:
    """Score held-out trials with a rule of known parameters (an oracle, or the output of a fit).

    Parameters
    ----------
    rule : LearningRule
        The rule.
    params : Mapping[str, array-like]
        Its parameters.
    features : tuple of str
        Design-matrix feature names.
    sigma : float or array-like, shape (K,)
        Per-trial weight noise sd.
    init_mean : float or array-like, shape (K,)
        Prior mean of a new animal's initial weights.
    init_sd : float or array-like, shape (K,)
        Prior sd of the initial weights.
    init_by_subject : Mapping[str, array-like]
        Known initial weights of (training) animals, used instead of ``init_mean`` when scoring them.
    sigma_session : float or array-like, optional
        Noise sd into a session's first trial.
    n_particles, n_replicates : int
        Particle-filter size (used unless ``sigma`` and ``init_sd`` are all 0, where the rollout is exact).
    seed : int, optional
        Seed of the particle filter.
    """

    rule: LearningRule
    params: Mapping[str, object]
    features: tuple[str, ...] = ("bias", "stimulus")
    sigma: object = 0.0
    init_mean: object = 0.0
    init_sd: object = 0.0
    init_by_subject: Mapping[str, object] = field(default_factory=dict)
    sigma_session: object = None
    n_particles: int = 256
    n_replicates: int = 4
    seed: int | None = 0

    def score(self, test: TrialData) -> PredictiveScore:
        """Return the one-step-ahead predictive score of every observed trial of ``test``."""
        cohort = CohortTensors.from_trials(test, self.features)
        k = cohort.n_features
        mean = np.stack([np.broadcast_to(np.asarray(self.init_by_subject.get(s, self.init_mean), float), (k,))
                         for s in cohort.subjects])
        sd = np.stack([np.zeros(k) if s in self.init_by_subject else np.broadcast_to(
            np.asarray(self.init_sd, float), (k,)) for s in cohort.subjects])
        exact = not np.any(np.asarray(self.sigma, float)) and not sd.any() and (
            self.sigma_session is None or not np.any(np.asarray(self.sigma_session, float)))
        if exact:
            return rollout_loglik(cohort, self.rule, self.params, init_weights=mean)
        return particle_filter_loglik(cohort, self.rule, self.params, sigma=self.sigma, init_mean=mean,
                                      init_sd=sd, sigma_session=self.sigma_session, n_particles=self.n_particles,
                                      n_replicates=self.n_replicates, seed=self.seed)
