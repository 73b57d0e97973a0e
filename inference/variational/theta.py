"""Hyperparameters of a fit on the unconstrained scale: log noise sd, initial weights, rule parameters."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Normal, Transform, biject_to, transforms

from learnrules.inference.variational.vi import Hyper
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import rule_network
from learnrules.models.rule import LearningRule

if TYPE_CHECKING:
    from learnrules.inference.result import FitResult

__all__ = ["Theta"]


class Theta:
    """Unconstrained hyperparameter tensors (leaves of the optimizer) and their priors.

    Parameters
    ----------
    rule : LearningRule or None
        The rule whose declared parameters (constraints, default priors) are fitted. For a neural rule the
        tensors of its network (``rule.network``, shared by all animals, no prior) are leaves too: pass a copy,
        the optimizer updates them in place.
    data : CohortTensors
        The cohort (for shapes and feature names).
    config : FitConfig
        Starting values and which hyperparameters are learned.
    """

    def __init__(self, rule: LearningRule | None, data: CohortTensors, config) -> None:  # noqa: ANN001
        dyn, dtype = config.dynamics, data.features.dtype
        k, n = data.n_features, data.n_animals
        self.feature_names = tuple(data.feature_names)
        self.log_sigma = torch.full((k,), math.log(dyn.sigma), dtype=dtype, requires_grad=config.learn_sigma)
        self.log_sigma_session = None if dyn.sigma_session is None else torch.full(
            (k,), math.log(dyn.sigma_session), dtype=dtype, requires_grad=config.learn_sigma_session)
        self.init_mean = torch.full((n, k), float(dyn.init_mean), dtype=dtype,
                                    requires_grad=config.learn_init_mean)
        self.sigma_init = torch.full((k,), float(dyn.sigma_init), dtype=dtype)
        self.rule_u: dict[str, Tensor] = {}
        self.transforms: dict[str, Transform] = {}
        self.priors: dict[str, Normal] = {}
        self.per_feature: dict[str, bool] = {}
        for name, spec in ({} if rule is None else rule.parameters).items():
            transform = biject_to(spec.constraint)
            centre = transform.inv(torch.tensor(float(spec.default), dtype=dtype))
            self.rule_u[name] = centre.expand(spec.shape(k)).clone().requires_grad_(True)
            self.transforms[name] = transform
            self.priors[name] = Normal(centre, torch.tensor(float(spec.prior_scale), dtype=dtype))
            self.per_feature[name] = spec.per_feature
        network = None if rule is None else rule_network(rule)
        self.network_leaves: list[Tensor] = [] if network is None else [
            p for p in network.parameters() if p.requires_grad]
        prior_sd = config.network_prior_sd
        self.output_prior: tuple[list[Tensor], list[Tensor], float] | None = None
        if network is not None and prior_sd is not None:
            layer = list(rule.output_layer().parameters())
            self.output_prior = (layer, [t.detach().clone() for t in layer], float(prior_sd))

    def warm_start(self, start: FitResult) -> None:
        """Start from a fit of the same animals: its noise, initial-weight means and same-named rule parameters.

        A hybrid rule's fit starts here from its parametric rule's fit: with the network's output at zero, the
        two models then coincide, so the joint fit starts at the parametric optimum.

        Raises
        ------
        ValueError
            If ``start`` was fitted to other features or another number of animals.
        """
        if tuple(start.feature_names) != self.feature_names or start.init_mean.shape != tuple(self.init_mean.shape):
            raise ValueError(f"the warm start was fitted to features {start.feature_names} and "
                             f"{start.init_mean.shape[0]} animals, not {self.feature_names} and "
                             f"{self.init_mean.shape[0]}")
        with torch.no_grad():
            self.log_sigma.copy_(torch.as_tensor(np.log(start.sigma)))
            if self.log_sigma_session is not None and start.sigma_session is not None:
                self.log_sigma_session.copy_(torch.as_tensor(np.log(start.sigma_session)))
            self.init_mean.copy_(torch.as_tensor(start.init_mean))
            for name, u in self.rule_u.items():
                if name in start.params:
                    u.copy_(self.transforms[name].inv(torch.as_tensor(start.params[name], dtype=u.dtype)))

    def hyper(self) -> Hyper:
        """Return the constrained hyperparameters (differentiable in the leaves)."""
        session = None if self.log_sigma_session is None else self.log_sigma_session.exp()
        params = {name: self.transforms[name](u) for name, u in self.rule_u.items()}
        return Hyper(self.log_sigma.exp(), session, self.sigma_init, self.init_mean, params)

    def leaves(self) -> list[Tensor]:
        """Return the tensors the optimizer updates (hyperparameters first, then network tensors)."""
        return self.hyper_leaves() + self.network_leaves

    def snapshot(self) -> list[Tensor]:
        """Return detached copies of the leaves, for :meth:`restore`."""
        return [leaf.detach().clone() for leaf in self.leaves()]

    def restore(self, values: list[Tensor]) -> None:
        """Copy a :meth:`snapshot` back into the leaves in place (the optimizer keeps its references)."""
        with torch.no_grad():
            for leaf, value in zip(self.leaves(), values, strict=True):
                leaf.copy_(value)

    def hyper_leaves(self) -> list[Tensor]:
        """Return the learned noise, initial-weight and rule-parameter tensors (no network tensors)."""
        tensors = [self.log_sigma, self.log_sigma_session, self.init_mean, *self.rule_u.values()]
        return [t for t in tensors if t is not None and t.requires_grad]

    def laplace_leaves(self) -> list[tuple[str, Tensor, Transform, bool]]:
        """Return ``(name, tensor, transform, per_feature)`` of the hyperparameters given a Laplace posterior."""
        out = []
        for name, t in (("sigma", self.log_sigma), ("sigma_session", self.log_sigma_session)):
            if t is not None and t.requires_grad:
                out.append((name, t, transforms.ExpTransform(), True))
        for name, u in self.rule_u.items():
            out.append((name, u, self.transforms[name], self.per_feature[name]))
        return out

    def log_prior(self) -> Tensor:
        """Return the log prior density of the unconstrained rule parameters (and of a network's output layer).

        The network's output layer gets a Normal prior of sd ``config.network_prior_sd`` (up to its constant)
        centred where the fit started it: a hybrid's output layer at zero, a network distilled from a parametric
        rule at the distilled values. It shrinks the network towards the parametric rule it started as, unless
        the choices ask for more. The other layers have no prior.
        """
        total = self.log_sigma.new_zeros(())
        for name, u in self.rule_u.items():
            total = total + self.priors[name].log_prob(u).sum()
        if self.output_prior is not None:
            tensors, centres, sd = self.output_prior
            total = total - 0.5 * sum((t - c).pow(2).sum() for t, c in zip(tensors, centres, strict=True)) / sd ** 2
        return total
