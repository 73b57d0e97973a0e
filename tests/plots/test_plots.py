"""Every plot renders on real objects (a simulated cohort, a real fit, cross-validation, twins) and says so."""

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection, PolyCollection, QuadMesh

from learnrules.behavior import load_trials
from learnrules.inference import fit
from learnrules.inference.evaluation.crossval import RulePredictor, compare_table, cross_validate
from learnrules.inference.evaluation.evaluate import rollout_loglik
from learnrules.inference.twin import simulate_twin
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural_grid import rule_drift_grid
from learnrules.other_rules import make_rule
from learnrules.plots import (
    SIGNED_CONTRASTS,
    plot_comparison,
    plot_drift_field,
    plot_elbo,
    plot_learning_curves,
    plot_psychometric,
    plot_rule_map,
    plot_weights,
    rule_update_table,
)
from learnrules.synthetic import IBLTask, simulate_cohort

FEATURES = ("bias", "stimulus")


@pytest.fixture(scope="module")
def cohort():
    sim = simulate_cohort(make_rule("reinforce-baseline"), n_animals=4, n_trials=800, sigma=0.02, init_sd=0.5,
                          task=IBLTask(session_length=200), seed=11)
    return sim, load_trials(sim.table)


@pytest.fixture(scope="module")
def fitted():
    """A real random-walk fit of one simulated animal (400 trials in 4 sessions) and its simulation."""
    sim = simulate_cohort(make_rule("reinforce-baseline"), n_animals=1, n_trials=400, sigma=0.02, init_sd=0.5,
                          task=IBLTask(session_length=100), seed=12)
    return sim, fit(load_trials(sim.table), rule=None, features=FEATURES, seed=0)


def _saved(fig, tmp_path, name):
    for suffix in (".png", ".pdf"):
        fig.savefig(tmp_path / f"{name}{suffix}")
        assert (tmp_path / f"{name}{suffix}").stat().st_size > 1000


def test_plot_weights_bands_sessions_and_truth(fitted, tmp_path):
    sim, fitted = fitted
    fig = plot_weights(fitted.weights, true_weights=sim.weights[0], path=tmp_path / "weights.png")
    assert (tmp_path / "weights.png").stat().st_size > 1000
    assert len(fig.axes) == len(FEATURES)
    assert [ax.get_ylabel() for ax in fig.axes] == list(FEATURES)
    for ax in fig.axes:
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 1  # the credible band
        sessions = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(sessions) == 1 and len(sessions[0].get_segments()) == 3  # 4 sessions -> 3 boundaries
        assert len(ax.lines) == 3  # posterior mean, truth, zero line
        mean = ax.lines[0].get_ydata()
        assert len(mean) == 400
    # the band encloses the posterior mean
    band = fig.axes[1].collections[0].get_paths()[0].vertices
    assert band[:, 1].min() <= fig.axes[1].lines[0].get_ydata().min()
    _saved(fig, tmp_path, "weights")
    with pytest.raises(ValueError, match="no subject"):
        plot_weights(fitted.weights, subject="nobody")


def test_plot_elbo_from_a_fit(fitted, tmp_path):
    _, fitted = fitted
    fig = plot_elbo(fitted.elbo_trace)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "ELBO" and len(ax.lines) == 1
    np.testing.assert_allclose(ax.lines[0].get_ydata(), fitted.elbo_trace)
    _saved(fig, tmp_path, "elbo")


def _grid_fitted_alpha(sim, data):
    """Pick the learning rate that maximizes the exact rollout log-likelihood (known initial weights)."""
    cohort = CohortTensors.from_trials(data, FEATURES)
    w0 = torch.as_tensor(sim.weights[:, 0])
    scores = {a: rollout_loglik(cohort, make_rule("reinforce-baseline"), {"alpha": np.full(2, a), "beta": 0.5},
                                init_weights=w0).total for a in (0.01, 0.02, 0.04, 0.08)}
    return max(scores, key=scores.get)


def test_plot_rule_map_fitted_beside_true(cohort, tmp_path):
    sim, data = cohort
    rule = make_rule("reinforce-baseline")
    alpha = _grid_fitted_alpha(sim, data)
    fitted = rule_update_table(rule, {"alpha": np.full(2, alpha), "beta": 0.5}, FEATURES)
    true = rule_update_table(rule, sim.params, FEATURES)
    assert set(fitted.columns) == {"w_bias", "w_stimulus", "stimulus", "choice", "reward", "feature", "dw"}
    # REINFORCE: a rewarded right choice on a right stimulus raises the stimulus weight
    row = true[(true.feature == "stimulus") & (true.choice == 1) & (true.reward == 1) & (true.stimulus == 1.0)]
    assert (row["dw"] > 0).all()
    fig = plot_rule_map(fitted, true_update_table=true)
    heat = fig.axes[:-1]  # the last axes is the shared colorbar
    assert len(heat) == 4 * 2 * len(FEATURES)  # 4 panels x (fitted, true) x features
    assert all(sum(isinstance(c, QuadMesh) for c in ax.collections) == 1 for ax in heat)
    # one color scale over the plotted slices (the other weight held at 0)
    shown = [t[((t.feature == "bias") & (t.w_stimulus == 0)) | ((t.feature == "stimulus") & (t.w_bias == 0))]
             for t in (fitted, true)]
    vmax = max(np.abs(t["dw"]).max() for t in shown)
    clim = heat[0].collections[0].get_clim()
    assert clim == pytest.approx((-vmax, vmax))
    assert "w_bias" in heat[0].get_ylabel() and "true" in heat[4].get_ylabel()
    _saved(fig, tmp_path, "rule_map")


def test_learning_and_psychometric_curves_real_vs_twins(cohort, tmp_path):
    sim, data = cohort
    real = data.to_frame()
    twins = [simulate_twin(data, make_rule("reinforce-baseline"), sim.params, init_weights=sim.weights[:, 0],
                           sigma=0.02, seed=s) for s in range(3)]
    fig = plot_learning_curves(real, twins)
    (ax,) = fig.axes
    assert len(ax.lines) == 4  # 3 twins + the real animals
    np.testing.assert_array_equal(ax.lines[-1].get_xdata(), [0, 1, 2, 3])
    ticks = ax.get_xticks()
    np.testing.assert_array_equal(ticks, np.round(ticks))  # whole sessions only
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 1  # twins' band
    assert ax.lines[-1].get_ydata()[-1] > ax.lines[-1].get_ydata()[0]  # the real cohort learns
    _saved(fig, tmp_path, "learning")
    fig = plot_psychometric(real, twins)
    assert [ax.get_title() for ax in fig.axes] == ["early sessions", "late sessions"]
    late = fig.axes[1].lines[-1].get_ydata()
    assert late[-1] - late[0] > 0.5  # steep late curve of the real animals
    assert len(fig.axes[0].lines[-1].get_xdata()) == 11  # 11 signed contrasts
    _saved(fig, tmp_path, "psychometric")


def test_plot_comparison_from_cross_validation(cohort, tmp_path):
    sim, data = cohort
    prior = dict(init_mean=0.0, init_sd=0.5, n_particles=64, n_replicates=2)
    rules = {"reinforce-baseline": lambda tr: RulePredictor(make_rule("reinforce-baseline"), sim.params, **prior),
             "zero": lambda tr: RulePredictor(make_rule("zero"), {}, sigma=0.05, **prior)}
    table = compare_table(cross_validate(data, rules, k=2, seed=0))
    fig = plot_comparison(table)
    (ax,) = fig.axes
    assert len(ax.patches) == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == table["rule"].tolist()
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, table["nats_per_trial"])
    assert any(isinstance(c, LineCollection) for c in ax.collections)  # error bars
    _saved(fig, tmp_path, "comparison")
    with pytest.raises(ValueError, match="metric"):
        plot_comparison(table, metric="auc")


def test_plot_drift_field_fitted_beside_true_on_one_scale(tmp_path):
    names = ["bias", "stimulus_left", "stimulus_right"]
    grid = {n: np.linspace(-2.0, 2.0, 5) for n in names}
    tables = [rule_drift_grid(make_rule("reinforce"), {"alpha": torch.full((3,), a)}, weights_grid=grid,
                              stimuli=SIGNED_CONTRASTS, feature_names=names) for a in (0.05, 0.1)]
    fig = plot_drift_field(tables[0], true_drift_table=tables[1])
    heat = fig.axes[:-1]  # the last axes is the shared colorbar
    assert len(heat) == 3 * 2 and all(sum(isinstance(c, QuadMesh) for c in ax.collections) == 1 for ax in heat)
    # x = w_bias, y = w_stimulus_left; w_stimulus_right held at 0 (its grid value nearest 0)
    shown = [t[t.w_stimulus_right == 0] for t in tables]
    vmax = max(np.abs(t["dw"]).max() for t in shown)
    assert heat[0].collections[0].get_clim() == pytest.approx((-vmax, vmax))
    first = shown[0][shown[0].feature == "bias"].pivot_table(index="w_stimulus_left", columns="w_bias", values="dw")
    np.testing.assert_allclose(np.asarray(heat[0].collections[0].get_array()).reshape(5, 5), first.to_numpy())
    assert heat[0].get_xlabel() == "" and heat[-1].get_xlabel() == "w_bias" and "true" in heat[1].get_title()
    _saved(fig, tmp_path, "drift_field")
    # One weight: lines of dw against it; axes that are not the table's weights are refused.
    single = rule_drift_grid(make_rule("reinforce"), {"alpha": torch.tensor([0.1])},
                             weights_grid={"stimulus": np.linspace(-2, 2, 9)}, stimuli=SIGNED_CONTRASTS,
                             feature_names=["stimulus"])
    line = plot_drift_field(single).axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), single.sort_values("w_stimulus")["dw"])
    with pytest.raises(ValueError, match="axes_features"):
        plot_drift_field(tables[0], axes_features=["bias", "lapse"])
