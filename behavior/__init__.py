"""Reading and validating trial tables, and building design matrices."""

from learnrules.behavior.features import DesignMatrix, animal_features, design_matrix, ibl_transform
from learnrules.behavior.load import CANONICAL_COLUMNS, load_trials
from learnrules.behavior.one import load_one, open_one
from learnrules.behavior.psytrack import from_psytrack, load_psytrack_rat
from learnrules.behavior.summary import summarize
from learnrules.behavior.trials import AnimalTrials, TrialData

__all__ = [
    "AnimalTrials",
    "TrialData",
    "DesignMatrix",
    "design_matrix",
    "animal_features",
    "ibl_transform",
    "load_trials",
    "load_one",
    "open_one",
    "CANONICAL_COLUMNS",
    "from_psytrack",
    "load_psytrack_rat",
    "summarize",
]
