"""learnrules.inference: structured variational fits of learning-rule models, results, estimator."""

from learnrules.inference.arviz_export import load_netcdf, save_netcdf, to_inference_data
from learnrules.inference.estimator import LearningRuleModel
from learnrules.inference.result import FitResult
from learnrules.inference.variational.banded import BandedFactor, BandedGaussianTrajectory, BlockTridiagonal, factor
from learnrules.inference.variational.fit import FitConfig, fit

__all__ = ["BandedFactor", "BandedGaussianTrajectory", "BlockTridiagonal", "factor", "FitConfig", "fit",
           "FitResult", "LearningRuleModel", "load_netcdf", "save_netcdf", "to_inference_data"]
