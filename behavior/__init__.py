"""Reading and validating trial tables, and building design matrices."""

from learnrules.behavior.trials import AnimalTrials, TrialData

__all__ = ["AnimalTrials", "TrialData"]
