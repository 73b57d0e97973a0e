"""The generative model: GLM policy, weight dynamics, and the learning-rule interface."""

from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, Parameter, Params

__all__ = ["CohortTensors", "LearningRule", "Parameter", "Params"]
