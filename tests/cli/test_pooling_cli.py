"""``--pooling`` and ``--population-sd`` through ``learnrules.cli.main`` on a small simulated cohort."""

import json

import arviz as az
import numpy as np
import pandas as pd
import pytest

from learnrules import cli
from learnrules.inference import FitResult


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("pool") / "sim.csv"
    assert cli.main(["simulate", "--animals", "3", "--trials", "300", "--population-sd", "0.5", "--seed", "5",
                     "--out", str(path), "--quiet"]) == 0
    return path


def test_simulate_writes_each_animals_parameters(table):
    meta = json.loads(table.with_suffix(".json").read_text())
    rates = np.array([meta["animal_params"][s]["alpha"] for s in ("sim000", "sim001", "sim002")])
    assert meta["population_sd"] == 0.5 and rates.shape == (3, 2)
    assert len(np.unique(rates[:, 0])) == 3  # each animal its own rate


def test_fit_hierarchical_writes_animal_and_population_tables(table, tmp_path):
    out = tmp_path / "fit"
    assert cli.main(["fit", str(table), "--pooling", "hierarchical", "--max-steps", "5", "--draws", "10",
                     "--out", str(out), "--quiet"]) == 0
    animals = pd.read_csv(out / "animal_parameters.csv")
    assert set(animals["subject"]) == {"sim000", "sim001", "sim002"}
    assert len(animals) == 3 * 3  # alpha[bias], alpha[stimulus], beta per animal
    assert (animals["lower"] <= animals["mean"]).all() and (animals["mean"] <= animals["upper"]).all()
    population = pd.read_csv(out / "population.csv")
    assert set(population["quantity"]) == {"median", "sd"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pooling"] == "hierarchical"
    assert {"animal_parameters.csv", "population.csv", "figures/animal_parameters.png"} <= set(summary["files"])
    assert (out / "figures" / "animal_parameters.png").read_bytes()[:4] == b"\x89PNG"
    res = FitResult.load(out / "fit.npz")
    assert res.animal_params["alpha"].shape == (3, 2) and res.animal_param_cov.shape == (3, 3, 3)
    alpha = az.from_netcdf(out / "posterior.nc").posterior["alpha"]
    assert alpha.dims == ("chain", "draw", "animal", "feature") and alpha.shape == (1, 10, 3, 2)
    # the draws spread around each animal's own estimate
    spread = np.log(alpha.values[0]).std(0)
    table = animals[animals["parameter"] == "alpha"].sort_values(["subject", "feature"])
    assert (spread > 0).all() and np.isfinite(table["sd"]).all()


def test_pooling_of_a_neural_rule_is_refused(table, tmp_path, capsys):
    assert cli.main(["fit", str(table), "--rule", "mlp", "--pooling", "hierarchical", "--out",
                     str(tmp_path / "x"), "--quiet"]) != 0
    assert "applies to parametric rules with parameters" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_scores_held_out_animals_under_the_population(table, tmp_path):
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(table), "--rules", "zero,reinforce-baseline", "--pooling", "hierarchical",
                     "--folds", "3", "--max-steps", "3", "--out", str(out), "--quiet"]) == 0
    cmp = pd.read_csv(out / "compare.csv")
    assert sorted(cmp["rule"]) == ["reinforce-baseline", "zero"]
    assert (cmp["nats_per_trial"] < 0).all() and (cmp["nats_per_trial"] > -np.log(2) - 0.2).all()
