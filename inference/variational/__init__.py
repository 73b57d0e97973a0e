"""The variational core: banded Gaussian posteriors over weight trajectories, the collapsed ELBO and its optimizer.

:mod:`~learnrules.inference.variational.vi` (the posterior and its ELBO, Gauss-Newton updates),
:mod:`~learnrules.inference.variational.banded` (block-tridiagonal factors),
:mod:`~learnrules.inference.variational.theta` (hyperparameters and priors),
:mod:`~learnrules.inference.variational.optimize` (the collapsed objective, L-BFGS / Adam steps),
:mod:`~learnrules.inference.variational.fit` (:func:`fit`), :mod:`~learnrules.inference.variational.laplace`
(parameter intervals), :mod:`~learnrules.inference.variational.distill` (a network started as a fitted rule).
"""

from learnrules.inference.variational.fit import FitConfig, fit

__all__ = ["FitConfig", "fit"]
