"""Reading and validating trial tables, and building design matrices."""

from learnrules.behavior.features import DesignMatrix, animal_features, design_matrix, ibl_transform
from learnrules.behavior.trials import AnimalTrials, TrialData

__all__ = ["AnimalTrials", "TrialData", "DesignMatrix", "design_matrix", "animal_features", "ibl_transform"]
