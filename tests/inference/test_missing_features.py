"""The history-feature check: the random walk's evidence with and without each history feature."""

import json

import numpy as np
import pandas as pd
import pytest

from learnrules import cli
from learnrules.behavior import load_trials
from learnrules.data import load_ibl_mouse
from learnrules.inference.evaluation.missing_features import MIN_GAIN, history_feature_evidence, suggest_features
from learnrules.other_rules import make_rule
from learnrules.synthetic import simulate_cohort


def _perseverating(weight: float):
    """Three animals whose choices follow the previous choice with a constant ``weight``."""
    return simulate_cohort(make_rule("reinforce-baseline"), n_animals=3, n_trials=1500, sigma=0.01, seed=1,
                           features=("bias", "stimulus", "prev_choice"), init_mean=(0.0, 1.0, weight),
                           init_sd=(0.5, 0.5, 0.0))


def test_the_real_mouse_gains_from_its_previous_choice_and_not_from_its_previous_reward():
    data = load_trials(load_ibl_mouse())
    table = history_feature_evidence(data, ("bias", "stimulus")).set_index("feature")
    assert list(table.index) == ["prev_choice", "prev_reward"]
    assert table.loc["prev_choice", "elbo_gain_nats_per_trial"] > 2 * MIN_GAIN  # 0.0040 nats/trial
    assert table.loc["prev_choice", "bias_sigma_with"] < 0.7 * table.loc["prev_choice", "bias_sigma_without"]
    assert table.loc["prev_reward", "elbo_gain_nats_per_trial"] < MIN_GAIN
    assert "--features bias,stimulus,prev_choice," in suggest_features(table.reset_index(), ("bias", "stimulus"))


def test_nothing_is_suggested_when_the_features_are_there_or_the_animals_do_not_perseverate():
    assert history_feature_evidence(load_trials(_perseverating(0.0).table), ("bias", "stimulus", "prev_choice",
                                                                             "prev_reward")).empty
    table = history_feature_evidence(load_trials(_perseverating(0.0).table), ("bias", "stimulus"))
    assert np.all(table["elbo_gain_nats_per_trial"] < MIN_GAIN)
    assert suggest_features(table, ("bias", "stimulus")) is None


def test_fit_writes_the_check_and_advises_the_feature_a_perseverating_cohort_needs(tmp_path, capsys):
    table = tmp_path / "trials.csv"
    _perseverating(0.8).table.to_csv(table, index=False)
    out = tmp_path / "fit"
    assert cli.main(["fit", str(table), "--rule", "zero", "--out", str(out), "--quiet", "--draws", "5"]) == 0
    printed = capsys.readouterr().out
    assert "advice: history features this fit left out raise" in printed and "prev_choice +" in printed
    evidence = pd.read_csv(out / "history_features.csv").set_index("feature")
    assert evidence.loc["prev_choice", "elbo_gain_nats_per_trial"] > MIN_GAIN
    summary = json.loads((out / "summary.json").read_text())
    assert "history_features.csv" in summary["files"]
    assert [r["feature"] for r in summary["history_features"]] == ["prev_choice", "prev_reward"]
    skipped = tmp_path / "skipped"
    assert cli.main(["fit", str(table), "--rule", "zero", "--out", str(skipped), "--quiet", "--draws", "5",
                     "--no-feature-check"]) == 0
    assert "advice" not in capsys.readouterr().out and not (skipped / "history_features.csv").exists()


@pytest.mark.parametrize("features", [("bias", "stimulus", "prev_choice", "prev_reward")])
def test_a_fit_with_both_history_features_is_not_checked(tmp_path, features, capsys):
    table = tmp_path / "trials.csv"
    _perseverating(0.8).table.to_csv(table, index=False)
    out = tmp_path / "fit"
    assert cli.main(["fit", str(table), "--rule", "zero", "--features", ",".join(features), "--out", str(out),
                     "--quiet", "--draws", "5"]) == 0
    assert "advice" not in capsys.readouterr().out and not (out / "history_features.csv").exists()
