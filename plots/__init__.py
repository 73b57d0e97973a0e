"""Figures: weights, rule maps and drift fields, learning and psychometric curves, ELBO, comparison, forest plot.

Every function builds a pyplot-free :class:`matplotlib.figure.Figure` (no global figure state), returns it,
and saves it when given ``path=`` (format from the suffix: ``.png``, ``.pdf``, ...).
"""

from learnrules.plots.curves import plot_comparison, plot_learning_curves, plot_psychometric
from learnrules.plots.forest import plot_forest
from learnrules.plots.rules import SIGNED_CONTRASTS, plot_drift_field, plot_rule_map, rule_update_table
from learnrules.plots.weights import plot_elbo, plot_weights

__all__ = ["SIGNED_CONTRASTS", "plot_comparison", "plot_drift_field", "plot_elbo", "plot_forest",
           "plot_learning_curves", "plot_psychometric", "plot_rule_map", "plot_weights", "rule_update_table"]
