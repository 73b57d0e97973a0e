"""
Compare rules and use the posterior in ArviZ
============================================

Which rule explains the choices best? We score rules on animals they were not fitted to, then export the
posteriors to ArviZ for PSIS-LOO, ``az.compare`` and a forest plot of the parameters.
"""

# %%
# A cohort
# --------
# Four simulated mice learning with REINFORCE with baseline (1,000 trials each). On your own table, replace
# ``cohort.table`` by its path.
import arviz as az
import torch

from learnrules.behavior import load_trials
from learnrules.inference import FitConfig, to_inference_data
from learnrules.inference.evaluation.crossval import animal_folds, compare_table
from learnrules.other_rules import make_rule
from learnrules.plots import plot_comparison
from learnrules.synthetic import simulate_cohort
from learnrules.workflow import cross_validate_rules, fit_model

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

cohort = simulate_cohort(make_rule("reinforce-baseline"), n_animals=4, n_trials=1000,
                         params={"alpha": [0.05, 0.05], "beta": 0.5}, sigma=0.01, seed=7)
data = load_trials(cohort.table)
rules = ("zero", "reinforce", "reinforce-baseline")

# %%
# Held-out animals
# ----------------
# Each fold fits every rule to the other animals and predicts the held-out animals' choices one step ahead
# with the shared rule (a Gaussian filter over their weights). This is what ``learnrules compare TABLE
# --rules zero,reinforce,reinforce-baseline --folds 2`` runs. Cross-validation fits skip the parameter
# intervals.
fast = FitConfig(param_posterior="none")


def fit_fold(train, name, start):
    """Fit one rule to one fold's training animals."""
    return fit_model(train, name, seed=0, config=fast, start=start)


cv = cross_validate_rules(data, rules, fit_fold, folds=animal_folds(data, k=2, seed=0))
table = compare_table(cv)
table[["rule", "rank", "nats_per_trial", "se", "accuracy", "diff_vs_best", "diff_se", "p_value"]]

# %%
# Log-likelihood per held-out trial in nats (chance is -0.693), with its standard error across animals, and
# each rule's paired difference to the best.
fig = plot_comparison(table)

# %%
# The posterior in ArviZ
# ----------------------
# Fit the random walk and REINFORCE with baseline to all animals, with Laplace intervals for the parameters,
# and export each fit: posterior draws of the weights and parameters, the pointwise log-likelihood, the
# posterior predictive and the observed choices. ``learnrules fit`` writes the same as ``posterior.nc``.
fits = {name: fit_model(data, name, seed=0) for name in ("zero", "reinforce-baseline")}
idata = {name: to_inference_data(model.result, data, rule=model.rule, n_draws=100, seed=0)
         for name, model in fits.items()}
idata["reinforce-baseline"]

# %%
# PSIS-LOO estimates the expected log predictive density of each trial given the rest of the same animals (a
# different question from held-out animals):
az.loo(idata["reinforce-baseline"])

# %%
# ``az.compare`` ranks the two fits by it. ArviZ warns where the Pareto shape of some trials' importance
# weights is high: each trial's weights have their own posterior, so leaving one trial out moves them, and
# those trials' LOO terms are less reliable; held-out animals have no such caveat.
az.compare(idata)

# %%
# A forest plot of REINFORCE with baseline's parameters, with their 90% intervals.
axes = az.plot_forest(idata["reinforce-baseline"], var_names=["alpha", "beta", "sigma"], hdi_prob=0.9,
                      combined=True, figsize=(6, 3))
