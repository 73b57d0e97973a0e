"""learnrules.inference: structured variational fits of learning-rule models, results, estimator."""

from learnrules.inference.arviz_export import load_netcdf, save_netcdf, to_inference_data
from learnrules.inference.banded import BandedFactor, BandedGaussianTrajectory, BlockTridiagonal, factor
from learnrules.inference.estimator import LearningRuleModel
from learnrules.inference.fit import FitConfig, fit
from learnrules.inference.result import FitResult

__all__ = ["BandedFactor", "BandedGaussianTrajectory", "BlockTridiagonal", "factor", "FitConfig", "fit",
           "FitResult", "LearningRuleModel", "load_netcdf", "save_netcdf", "to_inference_data"]
