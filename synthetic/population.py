"""Per-animal rule parameters drawn from a population, for simulating heterogeneous cohorts.

Each parameter is drawn on its unconstrained scale (``biject_to(constraint).inv``): a positive learning rate
with population sd 0.5 is log-normal, ``alpha_a = alpha * exp(0.5 z_a)``, so ``alpha`` is the population
median, the same model a hierarchical fit assumes
(:mod:`learnrules.inference.variational.population`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor
from torch.distributions import biject_to

from learnrules.models.rule import LearningRule

__all__ = ["draw_animal_params", "population_sds"]


def population_sds(rule: LearningRule, population_sd: float | Mapping[str, float]) -> dict[str, float]:
    """Return the population sd of each rule parameter: one value for all, or by name (missing names: 0).

    Raises
    ------
    ValueError
        For an unknown name or a negative sd.
    """
    if isinstance(population_sd, Mapping):
        unknown = sorted(set(population_sd) - set(rule.parameters))
        if unknown:
            raise ValueError(f"population_sd names unknown parameters {unknown} of {rule.name}; "
                             f"known: {list(rule.parameters)}")
        sds = {name: float(population_sd.get(name, 0.0)) for name in rule.parameters}
    else:
        sds = {name: float(population_sd) for name in rule.parameters}
    bad = {k: v for k, v in sds.items() if not v >= 0}
    if bad:
        raise ValueError(f"population_sd must be >= 0, got {bad}")
    return sds


def draw_animal_params(rule: LearningRule, params: Mapping[str, Tensor], population_sd: float | Mapping[str, float],
                       n_animals: int, rng: np.random.Generator) -> dict[str, Tensor]:
    """Return each animal's parameters, shape ``(animals, *shape)``, drawn around the population ``params``.

    Parameters
    ----------
    rule : LearningRule
        The rule (its declared constraints set the unconstrained scale).
    params : Mapping of str to Tensor
        Population medians, shaped as declared.
    population_sd : float or Mapping of str to float
        Sd of each parameter across animals on the unconstrained scale (a mapping names parameters; others
        are shared).
    n_animals : int
    rng : numpy.random.Generator
        Source of the draws.
    """
    sds = population_sds(rule, population_sd)
    out = {}
    for name, value in params.items():
        transform = biject_to(rule.parameters[name].constraint)
        centre = transform.inv(value)
        z = torch.as_tensor(rng.standard_normal((n_animals, *value.shape)), dtype=value.dtype)
        out[name] = transform(centre + sds[name] * z)
    return out
