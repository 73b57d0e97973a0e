"""Degenerate animals said out loud: one choice only, a feature constant within an animal, perfect separation.

Such data fit, but say little: a one-sided animal's choices bound its bias from one side only, and a
separated feature's weight has no finite best value, so their bands reflect the prior and the Gaussian
approximation more than the data. Each finding is logged as a warning naming the animal (the command line
prints warnings).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from learnrules.behavior.features import animal_features
from learnrules.behavior.trials import TrialData

__all__ = ["degenerate_findings", "warn_degenerate", "warn_one_sided"]

logger = logging.getLogger(__name__)


def _one_sided(data: TrialData) -> list[str]:
    found = []
    for animal in data:
        made = animal.choice[animal.observed]
        if len(made) and np.all(made == made[0]):
            side = "right" if made[0] == 1 else "left"
            found.append(f"animal {animal.subject!r} chose {side} on all {len(made)} trials with a choice: its "
                         "weights are bounded from one side only, and their band understates how far they may lie")
    return found


def degenerate_findings(data: TrialData, features: Sequence[str] | None = None) -> list[str]:
    """Return one sentence per degenerate animal (and feature), naming it; empty when none.

    Parameters
    ----------
    data : TrialData
        The animals.
    features : sequence of str, optional
        Design-matrix features to check for a constant column within an animal (``bias`` is constant by
        design) and for perfect separation (the feature's sign alone predicts every choice).
    """
    found = _one_sided(data)
    one_sided = {a.subject for a in data if any(f"animal {a.subject!r} " in m for m in found)}
    for animal in data if features else ():
        x = animal_features(animal, list(features))[animal.observed]
        y = animal.choice[animal.observed]
        for k, name in enumerate(features):
            if name == "bias" or len(y) == 0:
                continue
            if np.all(x[:, k] == x[0, k]):
                found.append(f"animal {animal.subject!r}: feature {name!r} is constant ({x[0, k]:g}), so its "
                             "weight is confounded with the bias")
                continue
            signed = x[:, k] != 0
            right = x[signed, k] > 0
            if animal.subject not in one_sided and signed.any() and (
                    np.all(right == (y[signed] == 1)) or np.all(right == (y[signed] == 0))):
                found.append(f"animal {animal.subject!r}: feature {name!r} separates its choices perfectly (its "
                             "sign alone predicts every choice where it is not 0), so its weight is bounded by the "
                             "prior only")
    return found


def warn_degenerate(data: TrialData, features: Sequence[str] | None = None, *, one_sided: bool = True
                    ) -> list[str]:
    """Log each of :func:`degenerate_findings` as a warning (without one-sided animals if not ``one_sided``)."""
    found = degenerate_findings(data, features)
    if not one_sided:
        found = [m for m in found if m not in _one_sided(data)]
    for message in found:
        logger.warning("%s", message)
    return found


def warn_one_sided(data: TrialData) -> list[str]:
    """Log a warning naming each animal that made one choice only; return the messages."""
    found = _one_sided(data)
    for message in found:
        logger.warning("%s", message)
    return found
