"""Rule names: what :func:`~learnrules.workflow.fit_model` accepts, and the rule a name builds.

A name is a registry rule (``reinforce-baseline``), a plain network (``mlp``, ``gru``) or a hybrid
``BASE+mlp`` / ``BASE+gru`` of a fittable registry rule and a network.
"""

from __future__ import annotations

from collections.abc import Sequence

from learnrules.models.neural import Activation, GRURule, MLPRule
from learnrules.models.rule import LearningRule
from learnrules.other_rules.registry import RULES, make_rule

__all__ = ["NEURAL_RULES", "RULE_NAMES", "TEACHER", "build_rule", "check_rule_name", "is_neural", "parse_list",
           "split_rule_name", "stage_one"]

NEURAL_RULES = ("mlp", "gru")
RULE_NAMES = (*RULES, *NEURAL_RULES)
# The parametric rule a plain mlp / gru is distilled from before its variational fit.
TEACHER = "reinforce-baseline"


def split_rule_name(name: str) -> tuple[str, str | None]:
    """Split a rule name into its parametric base and its network kind.

    ``"reinforce-baseline+mlp"`` -> ``("reinforce-baseline", "mlp")``; ``"mlp"`` -> ``("zero", "mlp")``;
    ``"delta"`` -> ``("delta", None)``. The name is not checked (see :func:`check_rule_name`).
    """
    if name in NEURAL_RULES:
        return "zero", name
    base, plus, kind = name.partition("+")
    return (base, kind) if plus else (name, None)


def stage_one(name: str) -> str:
    """Return the parametric rule a neural or hybrid rule's fit starts from (:data:`TEACHER` for a plain network)."""
    base = split_rule_name(name)[0]
    return TEACHER if base == "zero" else base


def check_rule_name(name: str) -> str:
    """Return ``name`` if it names a rule :func:`fit_model` can fit, else raise a ValueError listing the names.

    Known names: :data:`RULE_NAMES`, and ``BASE+mlp`` / ``BASE+gru`` for a fittable registry rule ``BASE``.
    """
    base, kind = split_rule_name(name)
    fittable = base in RULES and RULES[base].fittable
    if name in RULE_NAMES or (fittable and kind in NEURAL_RULES):
        return name
    hybrids = ", ".join(f"{n}+mlp" for n in RULES if RULES[n].fittable and n != "zero")
    raise ValueError(f"unknown rule {name!r}; known rules: {', '.join(RULE_NAMES)}, and hybrids of a parametric "
                     f"rule and a network: {hybrids} (or +gru)")


def is_neural(name: str) -> bool:
    """Return whether the rule called ``name`` has a network (``mlp``, ``gru`` or a hybrid)."""
    return split_rule_name(name)[1] is not None


def parse_list(text: str, *, what: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    """Split a comma-separated option into names, checking them against ``allowed``.

    Raises
    ------
    ValueError
        If the list is empty, has duplicates, or holds a name outside ``allowed``.
    """
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError(f"{what}: empty list {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: duplicate names in {text!r}")
    if allowed is not None:
        bad = [n for n in names if n not in allowed]
        if bad:
            raise ValueError(f"unknown {what} {bad[0]!r}; known: {', '.join(allowed)}")
    return names


def build_rule(name: str, n_features: int, *, seed: int | None = None, hidden: Sequence[int] = (32, 32),
               activation: Activation = "relu") -> LearningRule | None:
    """Return the rule called ``name`` (None for ``zero``, the random walk), with default settings.

    ``hidden`` (layer widths) and ``activation`` shape the update network of ``mlp`` and ``gru``; parametric
    rules ignore them.
    """
    if name == "zero":
        return None
    if name == "mlp":
        return MLPRule(n_features, hidden=tuple(hidden), activation=activation, seed=seed)
    if name == "gru":
        return GRURule(n_features, hidden=tuple(hidden), activation=activation, seed=seed)
    return make_rule(name)
