"""Small datasets shipped with learnrules: a simulated example cohort and a real IBL mouse."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

__all__ = ["load_example", "example_metadata", "load_ibl_mouse"]

_NAME = "example_cohort"


def load_example() -> pd.DataFrame:
    """Return the example cohort's raw trial table (IBL ALF coding; pass it to ``load_trials``).

    8 simulated animals x 3000 trials of an IBL-like task with biased blocks, learning with REINFORCE with
    baseline (default parameters); see :func:`example_metadata` and ``data/README.md``.
    """
    with resources.as_file(resources.files(__name__) / f"{_NAME}.csv.gz") as path:
        return pd.read_csv(path, compression="gzip")


def example_metadata() -> dict:
    """Return the example cohort's metadata: rule, parameters, seed, noise, task settings."""
    return json.loads((resources.files(__name__) / f"{_NAME}.json").read_text())


def load_ibl_mouse() -> pd.DataFrame:
    """Return the trials of IBL mouse SWC_054 (real data; pass the table to ``load_trials``).

    7,844 trials over 11 sessions of the IBL visual decision task (late training, then biased blocks), in IBL
    ALF coding, from the ibllib package's test fixtures (MIT licence); ``data/ibl_SWC_054/README.md`` gives the
    provenance and the columns.
    """
    with resources.as_file(resources.files(__name__) / "ibl_SWC_054" / "trials.csv.gz") as path:
        return pd.read_csv(path, compression="gzip")
