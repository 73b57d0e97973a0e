"""Evaluation: one-step-ahead predictive scores (filters) and cross-validation by animals or sessions."""

from learnrules.inference.evaluation.crossval import compare_table, cross_validate
from learnrules.inference.evaluation.evaluate import PredictiveScore, gaussian_filter_loglik

__all__ = ["PredictiveScore", "compare_table", "cross_validate", "gaussian_filter_loglik"]
