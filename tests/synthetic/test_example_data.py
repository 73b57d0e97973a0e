"""The shipped example cohort: loadable, documented, and reproducible from its seed."""

import json
from pathlib import Path

import numpy as np
import pytest

from learnrules.behavior import load_trials
from learnrules.data import example_metadata, load_example
from learnrules.synthetic import make_example_cohort

DATA = Path(__file__).resolve().parents[2] / "data"


def test_example_loads_and_matches_metadata():
    table = load_example()
    meta = example_metadata()
    assert len(table) == meta["n_animals"] * meta["n_trials"] == 24_000
    assert list(table.columns) == ["subject", "session", "trial", "contrastLeft", "contrastRight",
                                   "probabilityLeft", "choice", "feedbackType"]
    assert set(table["choice"]) == {-1, 1} and set(table["feedbackType"]) == {-1, 1}
    assert meta["rule"] == "ReinforceBaseline" and meta["seed"] == 2025
    assert meta == json.loads((DATA / "example_cohort.json").read_text())
    assert (DATA / "example_cohort.csv.gz").stat().st_size < 500_000
    data = load_trials(table)
    assert data.subjects == tuple(meta["subjects"])
    acc = np.mean([a.reward[-500:].mean() for a in data])
    assert acc == pytest.approx(meta["accuracy_last_500"]) and acc > 0.8


def test_example_is_reproducible_from_its_seed():
    table = load_example()
    rebuilt = make_example_cohort(example_metadata()["seed"]).to_ibl_table()
    np.testing.assert_array_equal(table["choice"], rebuilt["choice"])
    np.testing.assert_array_equal(table["feedbackType"], rebuilt["feedbackType"])
    np.testing.assert_allclose(table["contrastRight"], rebuilt["contrastRight"], equal_nan=True)
    np.testing.assert_allclose(table["probabilityLeft"], rebuilt["probabilityLeft"])
