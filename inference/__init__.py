"""learnrules.inference: structured variational fits of learning-rule models, results, estimator."""

from learnrules.inference.banded import BandedFactor, BandedGaussianTrajectory, BlockTridiagonal, factor
from learnrules.inference.estimator import LearningRuleModel
from learnrules.inference.fit import FitConfig, fit
from learnrules.inference.result import FitResult

__all__ = ["BandedFactor", "BandedGaussianTrajectory", "BlockTridiagonal", "factor", "FitConfig", "fit",
           "FitResult", "LearningRuleModel"]
