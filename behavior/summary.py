"""One-line-per-animal summaries of a TrialData."""

from __future__ import annotations

import numpy as np
import pandas as pd

from learnrules.behavior.trials import TrialData

__all__ = ["summarize"]


def summarize(data: TrialData) -> pd.DataFrame:
    """Summarize each animal's trials.

    Parameters
    ----------
    data : TrialData
        Loaded trials.

    Returns
    -------
    pandas.DataFrame
        One row per subject (in ``data`` order) with columns ``subject``, ``n_trials``, ``n_sessions``,
        ``accuracy`` (reward rate over trials with a choice), ``fraction_right`` (over trials with a choice)
        and ``n_missing`` (trials kept without a choice). Rates are NaN for an animal with no choices.
    """
    records = []
    for animal in data:
        observed = animal.observed
        n_observed = int(observed.sum())
        records.append({
            "subject": animal.subject,
            "n_trials": animal.n_trials,
            "n_sessions": animal.n_sessions,
            "accuracy": float(animal.reward[observed].mean()) if n_observed else np.nan,
            "fraction_right": float(animal.choice[observed].mean()) if n_observed else np.nan,
            "n_missing": animal.n_trials - n_observed,
        })
    return pd.DataFrame.from_records(records, columns=["subject", "n_trials", "n_sessions", "accuracy",
                                                       "fraction_right", "n_missing"])
