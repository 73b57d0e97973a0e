"""A thin name -> rule registry for the command line and configuration files."""

from __future__ import annotations

from types import MappingProxyType

from learnrules.models.rule import LearningRule
from learnrules.other_rules.compressed import CompressedReinforce
from learnrules.other_rules.delta import DeltaRule
from learnrules.other_rules.hebbian import GlobalErrorHebbian
from learnrules.other_rules.history import EligibilityTrace, RewardGatedReinforce
from learnrules.other_rules.reinforce import AsymmetricReinforce, Reinforce, ReinforceBaseline
from learnrules.other_rules.zero import ZeroRule

__all__ = ["RULES", "make_rule"]

RULES: MappingProxyType[str, type[LearningRule]] = MappingProxyType({
    "zero": ZeroRule,
    "reinforce": Reinforce,
    "reinforce-baseline": ReinforceBaseline,
    "asymmetric": AsymmetricReinforce,
    "delta": DeltaRule,
    "hebbian": GlobalErrorHebbian,
    "eligibility": EligibilityTrace,
    "reward-gated": RewardGatedReinforce,
    "compressed": CompressedReinforce,
})


def make_rule(name: str) -> LearningRule:
    """Return a rule with default settings from its registry name.

    Parameters
    ----------
    name : str
        One of the keys of :data:`RULES` (e.g. ``"reinforce-baseline"``).

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the known names.
    """
    try:
        cls = RULES[name]
    except KeyError:
        raise ValueError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}") from None
    return cls()
