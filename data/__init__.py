"""Small example datasets shipped with learnrules (made by ``learnrules.synthetic.examples``)."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

__all__ = ["load_example", "example_metadata"]

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
