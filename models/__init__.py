"""The generative model: GLM policy, weight dynamics, and the learning-rule interface."""

from learnrules.models.rule import LearningRule, Parameter, Params

__all__ = ["LearningRule", "Parameter", "Params"]
