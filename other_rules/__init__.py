"""Parametric learning rules: each one drives simulated agents and is a fittable baseline."""

from learnrules.other_rules.compressed import CompressedReinforce
from learnrules.other_rules.delta import DeltaRule
from learnrules.other_rules.hebbian import GlobalErrorHebbian
from learnrules.other_rules.history import EligibilityTrace, RewardGatedReinforce, exp_filter
from learnrules.other_rules.registry import RULES, make_rule
from learnrules.other_rules.reinforce import AsymmetricReinforce, Reinforce, ReinforceBaseline, policy_score
from learnrules.other_rules.zero import ZeroRule

__all__ = [
    "AsymmetricReinforce", "CompressedReinforce", "DeltaRule", "EligibilityTrace", "GlobalErrorHebbian",
    "Reinforce", "ReinforceBaseline", "RewardGatedReinforce", "ZeroRule", "RULES", "make_rule", "exp_filter",
    "policy_score",
]
