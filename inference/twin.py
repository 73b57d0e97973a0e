"""Posterior-predictive "digital twins": the fitted rule replayed on each animal's own stimuli.

A twin sees exactly the stimuli (and session structure) its animal saw, chooses with the fitted GLM, is
rewarded when it picks the correct side, and learns with the fitted rule (plus the fitted weight noise) from
the animal's initial weights. Comparing the twins' learning curves and psychometric curves with the real
animal's is a check of the whole model that no likelihood number gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from learnrules.behavior.trials import TrialData
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, as_params
from learnrules.synthetic.agent import simulate_agents

__all__ = ["simulate_twin", "accuracy_by_session", "psychometric", "signed_contrast"]


def _init_matrix(init_weights: object, subjects: Sequence[str], k: int) -> np.ndarray:
    if isinstance(init_weights, Mapping):
        missing = [s for s in subjects if s not in init_weights]
        if missing:
            raise ValueError(f"init_weights has no entry for subjects {missing}")
        rows = [np.asarray(init_weights[s], dtype=float) for s in subjects]
        return np.stack([np.broadcast_to(r, (k,)) for r in rows])
    arr = np.asarray(init_weights, dtype=float)
    try:
        return np.broadcast_to(arr, (len(subjects), k)).copy()
    except ValueError:
        raise ValueError(f"init_weights must be (K,), (animals, K) or a mapping; got shape {arr.shape}") from None


def _noise_sd(cohort: CohortTensors, sigma: object, sigma_session: object | None) -> torch.Tensor:
    """Noise sd after each trial (the transition into the next), shape (animals, T, K)."""
    k, dtype = cohort.n_features, cohort.features.dtype
    base = torch.as_tensor(np.broadcast_to(np.asarray(sigma, float), (k,)).copy(), dtype=dtype)
    opens = torch.zeros_like(cohort.session_start)
    opens[:, :-1] = cohort.session_start[:, 1:]
    if sigma_session is None:
        return base.expand(*opens.shape, k).clone()
    session = torch.as_tensor(np.broadcast_to(np.asarray(sigma_session, float), (k,)).copy(), dtype=dtype)
    return torch.where(opens.unsqueeze(-1), session, base)


def simulate_twin(data: TrialData, rule: LearningRule, params: Mapping[str, object], *, init_weights: object,
                  sigma: object = 0.0, sigma_session: object | None = None,
                  features: Sequence[str] = ("bias", "stimulus"), seed: int | None = None) -> pd.DataFrame:
    """Simulate each animal's twin on the animal's own trial sequence.

    Parameters
    ----------
    data : TrialData
        The real animals (their stimuli, correct sides and sessions are replayed; their choices are not).
    rule : LearningRule
        The fitted rule (stepped with :meth:`~LearningRule.step`).
    params : Mapping[str, array-like]
        Its parameters.
    init_weights : array-like (K,) or (animals, K), or Mapping[str, array-like]
        Initial weights of each twin (e.g. the fit's posterior mean on trial 0).
    sigma : float or array-like (K,)
        Per-trial weight noise sd.
    sigma_session : float or array-like (K,), optional
        Noise sd into a session's first trial (None: ``sigma``).
    features : sequence of str
        Design-matrix features; ``prev_choice`` / ``prev_reward`` are recomputed from the twin's own choices.
    seed : int, optional
        Seed of the twin's choices and weight noise.

    Returns
    -------
    pandas.DataFrame
        A canonical trial table (the columns of ``data.to_frame()``) with the twin's ``choice`` (1 = right)
        and ``reward`` (1 when the choice matches ``answer``; 0 where the answer is unknown), plus
        ``p_right`` (the twin's choice probability). Every trial gets a choice, including the real animal's
        missing ones.
    """
    cohort = CohortTensors.from_trials(data, features)
    dtype = cohort.features.dtype
    k = cohort.n_features
    prm = as_params(params, dtype)
    answer = np.zeros(cohort.choice.shape)
    for i, animal in enumerate(data):
        answer[i, :animal.n_trials] = np.nan_to_num(animal.answer, nan=-1.0)
    w0 = torch.as_tensor(_init_matrix(init_weights, cohort.subjects, k), dtype=dtype)
    generator = torch.Generator().manual_seed(int(np.random.default_rng(seed).integers(2**62)))
    out = simulate_agents(rule, prm, cohort.features, torch.as_tensor(answer, dtype=dtype), w0,
                          _noise_sd(cohort, sigma, sigma_session), generator, feature_names=tuple(features))
    frames = []
    for i, animal in enumerate(data):
        n = animal.n_trials
        frame = animal.to_frame()
        frame["choice"] = out.choice[i, :n].numpy()
        frame["reward"] = out.reward[i, :n].numpy()
        frame["p_right"] = out.choice_prob[i, :n].numpy()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def accuracy_by_session(table: pd.DataFrame) -> pd.DataFrame:
    """Return the fraction of rewarded trials per animal and session (trials with a choice only).

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, session, session_index`` (0-based position among the animal's sessions),
        ``accuracy, n_trials``.
    """
    t = table[table["choice"].notna()]
    out = t.groupby(["subject", "session"], sort=True).agg(accuracy=("reward", "mean"),
                                                           n_trials=("reward", "size")).reset_index()
    out["session_index"] = out.groupby("subject").cumcount()
    return out[["subject", "session", "session_index", "accuracy", "n_trials"]]


def signed_contrast(table: pd.DataFrame) -> np.ndarray:
    """Return ``contrastRight - contrastLeft`` (NaN read as 0), or the ``stimulus`` column if present."""
    if "contrastRight" in table and "contrastLeft" in table:
        return (table["contrastRight"].fillna(0.0) - table["contrastLeft"].fillna(0.0)).to_numpy(float)
    if "stimulus" in table:
        return table["stimulus"].to_numpy(float)
    raise ValueError(f"column 'contrastLeft'/'contrastRight' or 'stimulus' needed; columns are {list(table)}")


def psychometric(table: pd.DataFrame, *, sessions: slice | Sequence[int] | None = None,
                 by_subject: bool = False) -> pd.DataFrame:
    """Return the fraction of right choices per signed contrast.

    Parameters
    ----------
    table : pandas.DataFrame
        Canonical trial table (real or a twin's).
    sessions : slice or sequence of int, optional
        Which of each animal's sessions to use, by position among its sessions (``slice(0, 2)``: the first
        two; ``slice(-2, None)``: the last two). None uses all.
    by_subject : bool
        One curve per animal instead of trials pooled over animals.

    Returns
    -------
    pandas.DataFrame
        Columns ``[subject,] signed_contrast, p_right, n_trials``.
    """
    t = table[table["choice"].notna()].assign(signed_contrast=signed_contrast(table[table["choice"].notna()]))
    if sessions is not None:
        keep = []
        for _, block in t.groupby("subject", sort=False):
            order = np.unique(block["session"].to_numpy())
            chosen = order[sessions] if isinstance(sessions, slice) else order[np.asarray(sessions, dtype=int)]
            keep.append(block[block["session"].isin(chosen)])
        t = pd.concat(keep) if keep else t.iloc[:0]
    keys = ["subject", "signed_contrast"] if by_subject else ["signed_contrast"]
    out = t.groupby(keys, sort=True).agg(p_right=("choice", "mean"), n_trials=("choice", "size"))
    return out.reset_index()
