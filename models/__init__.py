"""The generative model: GLM policy, weight dynamics, and the learning-rule interface."""

from learnrules.models.dynamics import DynamicsConfig, drift_sequence, is_random_walk, linearized_drift
from learnrules.models.glm import bernoulli_log_likelihood, choice_probability, expected_log_likelihood
from learnrules.models.inputs import CohortTensors
from learnrules.models.model import WeightTrajectory, model
from learnrules.models.rule import LearningRule, Parameter, Params

__all__ = ["CohortTensors", "DynamicsConfig", "LearningRule", "Parameter", "Params", "WeightTrajectory",
           "bernoulli_log_likelihood", "choice_probability", "drift_sequence", "expected_log_likelihood",
           "is_random_walk", "linearized_drift", "model"]
