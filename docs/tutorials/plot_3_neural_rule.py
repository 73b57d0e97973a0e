"""
A neural rule and its maps
==========================

A hybrid rule is a parametric rule plus a small network that learns what the parametric rule misses. Here the
simulated mice learn with a delta rule, and we fit REINFORCE with baseline, alone and as the hybrid
``reinforce-baseline+mlp``: the network has something to find, and its maps show what.
"""

# %%
# A cohort, a parametric fit and a hybrid fit
# -------------------------------------------
# ``learnrules.workflow.fit_model`` fits a rule by its name, as the command line does. The hybrid is fitted
# in two stages: the parametric rule first, then the network from there (its output starts at zero, so the
# hybrid starts as exactly REINFORCE with baseline), by L-BFGS to convergence.
import numpy as np
import pandas as pd
import torch

from learnrules.behavior import animal_features, load_trials
from learnrules.inference import FitConfig
from learnrules.models.neural_grid import rule_drift_grid
from learnrules.models.rule import as_params
from learnrules.other_rules import make_rule
from learnrules.plots import plot_drift_field, plot_rule_map, rule_update_table
from learnrules.synthetic import simulate_cohort
from learnrules.workflow import fit_model

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

true_rule = make_rule("delta")  # the delta rule with its default parameters
cohort = simulate_cohort(true_rule, n_animals=6, n_trials=1000, sigma=0.01, seed=3)
data = load_trials(cohort.table)

fast = FitConfig(param_posterior="none")  # the maps need no parameter intervals
parametric = fit_model(data, "reinforce-baseline", seed=0, config=fast)
hybrid = fit_model(data, "reinforce-baseline+mlp", seed=0, config=fast, budget_s=90, start=parametric.result)
print(hybrid.note)
print(f"ELBO: REINFORCE+baseline {parametric.result.elbo:.1f}, with the network {hybrid.result.elbo:.1f}")

# %%
# The rule map
# ------------
# The update ``dw`` of the stimulus weight over (signed stimulus, current weight), one panel per choice x
# reward, for the fitted hybrid; the true rule is drawn in the row below on the same color scale.
names = hybrid.result.feature_names
grid = {name: np.linspace(-2, 2, 9) for name in names}
fitted_map = rule_update_table(hybrid.rule, hybrid.result.params, names, weights_grid=grid)
true_map = rule_update_table(true_rule, cohort.params, names, weights_grid=grid)
fig = plot_rule_map(fitted_map, true_update_table=true_map, features=["stimulus"])

# %%
# The network map: what the parametric rule misses
# ------------------------------------------------
# The network part alone, on its own color scale: where REINFORCE with baseline updates the weights
# differently from the delta rule, the network adds the difference.
network_map = rule_update_table(hybrid.rule.part, {}, names, weights_grid=grid)
fig = plot_rule_map(network_map, label="network", features=["stimulus"])

# %%
# The drift field
# ---------------
# A flexible rule is not identified well from choices alone: other updates predict almost as well. What the
# choices pin down best is the drift field, the update expected at each pair of weights over the task's
# stimuli and the animal's own choices. Read the rule map as one rule that predicts as well, and the drift
# field as what the data determine.
stimuli = np.concatenate([animal_features(a, ["stimulus"])[:, 0] for a in data])
sides = np.concatenate([a.answer for a in data])


def drift(rule, params):
    """The expected update on the grid, over this cohort's stimuli and correct sides."""
    return rule_drift_grid(rule, as_params(params), weights_grid=grid, stimuli=stimuli, sides=sides,
                           feature_names=names)


true_field = drift(true_rule, cohort.params)
fig = plot_drift_field(drift(hybrid.rule, hybrid.result.params), true_drift_table=true_field)

# %%
# How close is each fit's drift field to the truth? The relative RMSE over the grid:
keys = [f"w_{name}" for name in names] + ["feature"]


def relative_error(model):
    merged = pd.merge(drift(model.scoring_rule, model.result.params), true_field, on=keys,
                      suffixes=("_fit", "_true"))
    return np.sqrt(((merged["dw_fit"] - merged["dw_true"]) ** 2).mean() / (merged["dw_true"] ** 2).mean())


pd.Series({"reinforce-baseline": relative_error(parametric), "reinforce-baseline+mlp": relative_error(hybrid)},
          name="drift-field relative RMSE")

# %%
# The network brings the drift field much closer to the delta rule's, and the ELBO up. Whether that gain
# predicts new animals is the question of held-out comparison (next tutorial). From the command line,
# ``learnrules fit TABLE --rule reinforce-baseline+mlp --out DIR`` writes ``figures/rule_map.png``,
# ``figures/network_map.png``, ``figures/drift_field.png`` and ``rule.pt``, the trained network.
