"""Degenerate animals are named in warnings, and a one-sided animal does not slow its cohort's fit."""

import logging
import time

import numpy as np
import pandas as pd
import pytest
import torch

from learnrules.behavior import load_trials
from learnrules.behavior.degenerate import degenerate_findings
from learnrules.inference.variational.fit import FitConfig
from learnrules.other_rules.registry import make_rule
from learnrules.synthetic.cohort import simulate_cohort
from learnrules.workflow import fit_model


def cohort(n_trials: int) -> pd.DataFrame:
    sim = simulate_cohort(make_rule("reinforce-baseline"), n_animals=4, n_trials=n_trials, sigma=0.02, seed=1,
                          dtype=torch.float64)
    return sim.table


def one_sided(table: pd.DataFrame) -> pd.DataFrame:
    """The first animal's trials again as animal 'always_right', which chose right on every trial."""
    first = table[table["subject"] == table["subject"].iloc[0]]
    return first.assign(subject="always_right", choice=1, reward=(first["answer"] == 1).astype(int))


def test_one_sided_animal_is_named_in_a_warning(caplog):
    table = cohort(50)
    with caplog.at_level(logging.WARNING, logger="learnrules.behavior.degenerate"):
        load_trials(pd.concat([table, one_sided(table)], ignore_index=True))
    (record,) = caplog.records
    assert record.getMessage().startswith("animal 'always_right' chose right on all 50 trials with a choice")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="learnrules.behavior.degenerate"):
        load_trials(table)
    assert caplog.records == []


def test_constant_and_separating_features_are_named():
    table = cohort(50)
    first = table[table["subject"] == table["subject"].iloc[0]]
    blank = first.assign(subject="blank", contrastLeft=0.0, contrastRight=0.25)
    perfect = first.assign(subject="perfect", choice=first["answer"], reward=1)
    found = degenerate_findings(load_trials(pd.concat([table, blank, perfect], ignore_index=True)),
                                ("bias", "stimulus"))
    assert found == [
        "animal 'blank': feature 'stimulus' is constant (0.848361), so its weight is confounded with the bias",
        "animal 'perfect': feature 'stimulus' separates its choices perfectly (its sign alone predicts every "
        "choice where it is not 0), so its weight is bounded by the prior only"]


@pytest.mark.parametrize("rule", ["reinforce-baseline"])
def test_fit_with_a_one_sided_animal_takes_as_long_as_without(rule):
    table = cohort(300)
    seconds, bands = {}, {}
    for label, frame in (("cohort", table), ("with one-sided", pd.concat([table, one_sided(table)],
                                                                          ignore_index=True))):
        data = load_trials(frame)
        start = time.process_time()  # CPU time of this process: other processes' load does not count
        model = fit_model(data, rule, seed=0, config=FitConfig(param_posterior="laplace"))
        seconds[label] = time.process_time() - start
        assert model.result.converged
        bands[label] = model.result.weights
    assert seconds["with one-sided"] <= 1.5 * seconds["cohort"], seconds
    shared = bands["cohort"].merge(bands["with one-sided"], on=["subject", "trial", "feature"])
    np.testing.assert_allclose(shared["mean_x"], shared["mean_y"], atol=0.15)  # the others' weights barely move
