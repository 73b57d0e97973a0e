"""Runs that used to end badly after the work was done: each now ends whole, with the value asserted.

- a bias-only fit of a table without contrasts wrote no summary.json (its psychometric figure needs stimuli);
- ``compare --scheme sessions`` of one animal had no SE, and its figure failed on NaN axis limits;
- ``--max-steps`` caps a network fit as it caps a parametric one.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learnrules.cli import main
from learnrules.inference.evaluation.crossval import compare_table
from learnrules.plots import plot_comparison


def _table(path: Path, *, contrasts: bool) -> Path:
    rng = np.random.default_rng(1)
    n = 40
    answer = rng.integers(0, 2, 2 * n)
    choice = np.where(rng.random(2 * n) < 0.8, answer, 1 - answer)
    frame = pd.DataFrame({"subject": ["a"] * n + ["b"] * n, "session": np.repeat([1, 2, 1, 2], n // 2),
                          "choice": choice, "reward": (choice == answer).astype(int)})
    if contrasts:
        frame = frame.assign(contrastLeft=np.where(answer == 0, 0.5, 0.0),
                             contrastRight=np.where(answer == 1, 0.5, 0.0))
    frame.to_csv(path, index=False)
    return path


def test_bias_only_fit_of_a_table_without_contrasts_writes_every_output(tmp_path):
    out = tmp_path / "out"
    code = main(["fit", str(_table(tmp_path / "t.csv", contrasts=False)), "--rule", "zero", "--features", "bias",
                 "--max-steps", "3", "--draws", "10", "--out", str(out), "-q"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["features"] == ["bias"] and "figures/psychometric.png" not in summary["files"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(summary["files"])


def _one_animal_cv() -> pd.DataFrame:
    """Held-out sessions of one animal, 5 folds: the network beats the parametric rule in every fold."""
    rows = []
    for fold in range(5):
        for rule, nats in (("reinforce-baseline", -0.60 - 0.01 * fold), ("mlp", -0.58 - 0.01 * fold)):
            rows.append({"rule": rule, "fold": fold, "subject": "SWC_054", "loglik": nats * 100,
                         "nats_per_trial": nats, "bits_per_trial": nats / np.log(2), "accuracy": 0.8,
                         "n_trials": 100})
    return pd.DataFrame(rows)


def test_one_animal_gets_a_paired_se_across_its_folds(tmp_path):
    table = compare_table(_one_animal_cv())
    assert table["rule"].tolist() == ["mlp", "reinforce-baseline"]
    assert (table["se_across"] == "folds").all() and (table["n_animals"] == 1).all()
    assert table.loc[0, "se"] == pytest.approx(np.std([-0.58 - 0.01 * f for f in range(5)], ddof=1) / np.sqrt(5))
    assert table.loc[1, "diff_vs_best"] == pytest.approx(-0.02) and table.loc[1, "p_value"] < 1e-6
    plot_comparison(table, path=tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").stat().st_size > 0


def test_comparison_figure_draws_rules_without_an_se(tmp_path):
    cv = _one_animal_cv()
    table = compare_table(cv[cv["fold"] == 0])  # one animal, one fold: no SE at all
    assert table["se"].isna().all()
    plot_comparison(table, path=tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").stat().st_size > 0


def test_max_steps_caps_a_network_fit(tmp_path):
    out = tmp_path / "out"
    code = main(["fit", str(_table(tmp_path / "t.csv", contrasts=True)), "--rule", "mlp", "--hidden", "4",
                 "--max-steps", "2", "--draws", "10", "--out", str(out), "-q"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 1 <= summary["n_steps"] <= 2
