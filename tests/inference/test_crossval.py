"""Cross-validation: folds, held-out-session masking, the comparison table, and ranking a known rule."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from learnrules.behavior import load_trials
from learnrules.inference.evaluation.crossval import (
    RulePredictor,
    animal_folds,
    compare_table,
    cross_validate,
    hold_out_trials,
    mask_trials,
    session_folds,
)
from learnrules.inference.evaluation.evaluate import particle_filter_loglik, rollout_loglik
from learnrules.inference.rollout.rollout_fit import RolloutConfig, fit_rollout
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.inference.variational.vi import expected_likelihood
from learnrules.models.dynamics import drift_sequence
from learnrules.models.inputs import CohortTensors
from learnrules.other_rules import make_rule
from learnrules.synthetic import IBLTask, simulate_cohort


@pytest.fixture(scope="module")
def cohort():
    rule = make_rule("reinforce-baseline")
    sim = simulate_cohort(rule, n_animals=6, n_trials=1000, sigma=0.0, init_sd=0.5, seed=3)
    return sim, load_trials(sim.table)


def test_animal_folds_partition_and_seed(cohort):
    _, data = cohort
    folds = animal_folds(data, k=3, seed=0)
    held = [s for f in folds for s in f.test.subjects]
    assert sorted(held) == sorted(data.subjects) and len(held) == len(set(held))
    for f in folds:
        assert set(f.train.subjects).isdisjoint(f.test.subjects)
        assert set(f.train.subjects) | set(f.test.subjects) == set(data.subjects)
    again = animal_folds(data, k=3, seed=0)
    assert [f.test.subjects for f in again] == [f.test.subjects for f in folds]
    other = [animal_folds(data, k=3, seed=s) for s in range(1, 6)]
    assert any([f.test.subjects for f in o] != [f.test.subjects for f in folds] for o in other)
    with pytest.raises(ValueError, match="k must be"):
        animal_folds(data, k=7)


def test_session_folds_hold_out_exactly_the_held_out_sessions():
    sim = simulate_cohort(make_rule("reinforce"), n_animals=2, n_trials=1000, task=IBLTask(session_length=200),
                          seed=2)
    data = load_trials(sim.table)
    folds = session_folds(data, k=2, seed=1)
    covered = {s: np.zeros(a.n_trials, int) for s, a in zip(data.subjects, data, strict=True)}
    for fold in folds:
        for animal in fold.train:
            mask = fold.score_mask[animal.subject]
            covered[animal.subject] += mask
            # held out of fitting, choices kept (they move the weights in the fit as in the score)
            assert (animal.held_out == mask).all()
            np.testing.assert_array_equal(animal.choice, data[animal.subject].choice)
            # whole sessions are held out
            held = set(animal.session[mask])
            assert set(animal.session[~mask]).isdisjoint(held) and len(held) in (2, 3)
    assert all((c == 1).all() for c in covered.values())  # every trial held out exactly once

    # the score counts exactly the held-out trials, predicted by a rollout through the whole data
    w0 = torch.as_tensor(sim.weights[:, 0])
    oracle = RulePredictor(make_rule("reinforce"), sim.params,
                           init_by_subject=dict(zip(data.subjects, w0.numpy(), strict=True)))
    cv = cross_validate(data, {"oracle": lambda train: oracle}, folds=folds)
    full = rollout_loglik(CohortTensors.from_trials(data), make_rule("reinforce"), sim.params, init_weights=w0)
    for row in cv.itertuples():
        mask = folds[row.fold].score_mask[row.subject]
        a = data.subjects.index(row.subject)
        assert row.n_trials == mask.sum()
        assert row.loglik == pytest.approx(full.loglik[a, :len(mask)][mask].sum())


def test_masked_training_data_still_evolves_weights(cohort):
    sim, data = cohort
    masks = {s: np.arange(1000) >= 500 for s in data.subjects}
    masked = CohortTensors.from_trials(mask_trials(data, masks))
    assert not masked.observed[:, 500:].any() and masked.observed[:, :500].all()
    score = particle_filter_loglik(masked, make_rule("zero"), {}, sigma=0.1, init_mean=0.0, init_sd=1.0,
                                   n_particles=32, n_replicates=2, seed=0)
    # unobserved trials have no term, but the predictive keeps spreading (weights evolve through them)
    assert score.n_trials == 6 * 500 and np.isnan(score.loglik[:, 500:]).all()
    assert np.isfinite(score.p_right[:, 500:]).all()


def test_held_out_trials_keep_their_choices_and_lose_their_likelihood(cohort):
    _, data = cohort
    masks = {s: np.arange(1000) % 5 == 0 for s in data.subjects}
    held = CohortTensors.from_trials(hold_out_trials(data, masks))
    assert held.observed.all() and (held.choice == CohortTensors.from_trials(data).choice).all()
    assert (held.fitted == ~torch.as_tensor(np.stack(list(masks.values())))).all()
    assert (held.select([2, 0]).fitted == held.fitted[[2, 0]]).all()
    assert CohortTensors.from_trials(data).held_out is None  # nothing held out: nothing stored
    with pytest.raises(ValueError, match="'held_out' has 3 rows"):
        replace(data.animals[0], held_out=np.zeros(3, bool))


def test_the_variational_fit_drops_held_out_likelihood_terms_and_keeps_their_updates(cohort):
    sim, full = cohort
    data = full.select(full.subjects[:2])
    masks = {s: (np.arange(1000) >= 300) & (np.arange(1000) < 500) for s in data.subjects}
    config = FitConfig(learn_sigma=False, param_posterior="none")
    # random walk: the choices only enter the likelihood, so holding out = masking, exactly
    held, masked = fit(hold_out_trials(data, masks), config=config), fit(mask_trials(data, masks), config=config)
    np.testing.assert_allclose(held.weights_mean, masked.weights_mean, atol=1e-8)
    assert held.elbo == pytest.approx(masked.elbo, rel=1e-10)
    # the objective's two parts on any trajectory: held-out trials have no likelihood term (as masked ones) ...
    cohorts = {name: CohortTensors.from_trials(d) for name, d in
               (("full", data), ("held", hold_out_trials(data, masks)), ("masked", mask_trials(data, masks)))}
    weights = torch.as_tensor(sim.weights[:2])
    cov = 0.01 * torch.eye(2).expand(2, 1000, 2, 2)
    ell = {name: expected_likelihood(c, weights, cov) for name, c in cohorts.items()}
    torch.testing.assert_close(ell["held"], ell["masked"], rtol=0, atol=1e-12)
    assert (ell["full"] < ell["held"] - 10).all()
    # ... but, unlike masked ones, move the weights as observed ones do
    rule, params = make_rule("reinforce-baseline"), {k: torch.as_tensor(v) for k, v in sim.params.items()}
    drift = {name: drift_sequence(rule, params, c, weights) for name, c in cohorts.items()}
    torch.testing.assert_close(drift["held"], drift["full"], rtol=0, atol=0)
    assert not drift["masked"][:, 300:500].any() and drift["full"][:, 300:500].abs().sum() > 0.1


def test_a_rollout_fit_on_held_out_sessions_recovers_the_rate_that_masking_biases():
    # Noise-free REINFORCE, known initial weights, half the sessions held out. Masking their choices stops the
    # rule in them while fitting, so the fit raises the learning rate to catch up (~1.6x here).
    rule = make_rule("reinforce")
    sim = simulate_cohort(rule, n_animals=8, n_trials=2000, sigma=0.0, init_sd=0.5,
                          task=IBLTask(session_length=200), seed=2)
    data = load_trials(sim.table)
    fold = session_folds(data, k=2, seed=1)[0]
    config = RolloutConfig(optimizer="lbfgs", epochs=30, init_weights="fixed", tbptt=None, update="sequence")
    alpha, w0 = {}, torch.as_tensor(sim.weights[:, 0])
    for name, train in (("full", data), ("held out", fold.train), ("masked", mask_trials(data, fold.score_mask))):
        res = fit_rollout(CohortTensors.from_trials(train), rule, init_weights=w0, config=config, seed=0,
                          progress=False)
        alpha[name] = res.params["alpha"].numpy()
        if name == "held out":  # its loss: the trials not held out, along the rollout through all of them
            ll = rollout_loglik(CohortTensors.from_trials(data), rule, res.params, init_weights=w0).loglik
            fitted = ~np.stack([fold.score_mask[s] for s in data.subjects])
            assert res.losses[-1] == pytest.approx(-ll[fitted].mean(), rel=1e-6)
    assert np.all(np.abs(alpha["held out"] / alpha["full"] - 1) < 0.25), alpha
    assert np.all(alpha["masked"] / alpha["full"] > 1.4), alpha


def test_compare_table_hand_computed():
    rng = np.random.default_rng(0)
    rows = []
    for rule, offset in [("a", -0.50), ("b", -0.52), ("c", -0.60)]:
        for subject in ["s1", "s2", "s3", "s4"]:
            for fold, n in [(0, 100), (1, 300)]:
                nats = offset + 0.01 * rng.standard_normal()
                rows.append({"rule": rule, "fold": fold, "subject": subject, "loglik": nats * n, "n_trials": n,
                             "nats_per_trial": nats, "bits_per_trial": nats / np.log(2), "accuracy": 0.7,
                             "mc_se": 0.0})
    cv = pd.DataFrame(rows)
    table = compare_table(cv)
    assert table["rule"].tolist() == ["a", "b", "c"] and table["rank"].tolist() == [1, 2, 3]
    pooled = cv.groupby(["rule", "subject"])[["loglik", "n_trials"]].sum()
    per_animal = (pooled["loglik"] / pooled["n_trials"]).unstack(0)
    assert table.loc[0, "nats_per_trial"] == pytest.approx(per_animal["a"].mean())
    assert table.loc[2, "se"] == pytest.approx(per_animal["c"].std(ddof=1) / 2)
    assert table.loc[2, "p_value"] == pytest.approx(stats.ttest_rel(per_animal["c"], per_animal["a"]).pvalue)
    assert table.loc[2, "diff_vs_best"] == pytest.approx((per_animal["c"] - per_animal["a"]).mean())
    assert table["within_1se"].tolist() == [True, False, False]
    assert np.isnan(table.loc[0, "p_value"])
    assert compare_table(cv, test="wilcoxon").loc[2, "p_value"] == pytest.approx(
        stats.wilcoxon(per_animal["c"], per_animal["a"]).pvalue)


def test_cross_validation_ranks_the_true_family_first(cohort):
    # oracle predictors: each family with the true learning rate; a new animal starts from the population prior
    sim, data = cohort
    prior = dict(init_mean=0.0, init_sd=0.5, n_particles=256, n_replicates=2, seed=0)
    rules = {
        "reinforce-baseline": lambda train: RulePredictor(make_rule("reinforce-baseline"), sim.params, **prior),
        "reinforce": lambda train: RulePredictor(make_rule("reinforce"), {"alpha": sim.params["alpha"]}, **prior),
        "zero": lambda train: RulePredictor(make_rule("zero"), {}, sigma=0.05, **prior),
    }
    cv = cross_validate(data, rules, k=3, seed=0)
    assert set(cv["subject"]) == set(data.subjects) and (cv["n_trials"] == 1000).all()
    table = compare_table(cv).set_index("rule")
    family = table.loc[["reinforce-baseline", "reinforce"]]
    assert (family["rank"] == 1).any() or family["within_1se"].any()
    assert table.loc["reinforce-baseline", "within_1se"]
    assert table.loc["zero", "rank"] == 3 and table.loc["zero", "p_value"] < 0.05


def _grid_fit(rule_name, grid, *, sigma=0.0):
    """Fit one scalar (alpha, or sigma for the random walk) by the training animals' predictive score."""
    rule = make_rule(rule_name)
    prior = dict(init_mean=0.0, init_sd=0.5, n_particles=128, n_replicates=1, seed=0)

    def fit_fn(train):
        cohort = CohortTensors.from_trials(train)
        best = None
        for value in grid:
            params = {**rule.default_params(2), **({} if rule_name == "zero" else {"alpha": np.full(2, value)})}
            s = value if rule_name == "zero" else sigma
            total = particle_filter_loglik(cohort, rule, params, sigma=s, **prior).total
            if best is None or total > best[0]:
                best = (total, params, s)
        return RulePredictor(rule, best[1], sigma=best[2], **{**prior, "n_replicates": 2})

    return fit_fn


@pytest.mark.slow
def test_cross_validation_with_fitted_rules_ranks_the_true_family_first(cohort):
    sim, data = cohort
    rules = {"reinforce-baseline": _grid_fit("reinforce-baseline", [0.01, 0.03, 0.1]),
             "reinforce": _grid_fit("reinforce", [0.01, 0.03, 0.1]),
             "zero": _grid_fit("zero", [0.02, 0.05, 0.1])}
    table = compare_table(cross_validate(data, rules, k=3, seed=0)).set_index("rule")
    family = table.loc[["reinforce-baseline", "reinforce"]]
    assert (family["rank"] == 1).any()
    assert table.loc["zero", "rank"] == 3
