"""The learning-rule interface shared by the simulator (synthetic/) and the likelihood (models/).

A rule maps what happened on trial t to the change of the GLM weights,

    w_{t+1} = w_t + drift(w_t, x_t, y_t, r_t, c_t) + eps_t,

where ``c_t`` is a *context* that summarizes the observed history up to and including trial t
(``c_t = next_context(c_{t-1}, x_t, y_t, r_t)``). Because the context reads only observed data, the weights
stay Markov given the data, and the likelihood can compute every trial's context once, then evaluate the
drift for all trials at once (vectorized over animals and trials). Markov rules have an empty context.

A rule whose state depends on the latent weights themselves (e.g. error feedback of compressed updates)
overrides :meth:`LearningRule.step` and sets ``fittable = False``: it can drive simulated agents but not be
fitted.

Shapes: ``w`` and ``x`` are ``(*batch, K)``, ``y`` and ``r`` are ``(*batch,)`` with choice 1 = right and
reward 1 = rewarded, ``context`` is ``(*batch, C)``. Parameters are tensors of shape ``()`` or ``(K,)``
(``per_feature=True``) and broadcast against the batch. Missing choices never reach a rule: the model
masks those trials (no update).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import biject_to, constraints
from torch.distributions.constraints import Constraint

__all__ = ["Parameter", "LearningRule", "Params", "as_params"]

Params = Mapping[str, Tensor]


def as_params(params: Mapping[str, object], dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """Return parameter values (floats, arrays, tensors) as float tensors (default: torch's default dtype)."""
    dtype = dtype or torch.get_default_dtype()
    return {name: torch.as_tensor(np.asarray(value, dtype=float), dtype=dtype) for name, value in params.items()}


@dataclass(frozen=True)
class Parameter:
    """A rule parameter declared with its constraint and default prior.

    Parameters
    ----------
    default : float
        Value used by simulators when none is given, and the centre of the default prior.
    constraint : torch.distributions.constraints.Constraint
        Support of the parameter (e.g. ``constraints.positive``).
    per_feature : bool
        True for one value per GLM weight (shape ``(K,)``), False for a scalar.
    prior_scale : float
        Standard deviation of the default prior, a Normal on the unconstrained value
        ``biject_to(constraint).inv(value)`` centred on the unconstrained default.
    doc : str
        One line saying what the parameter means.
    """

    default: float
    constraint: Constraint = constraints.real
    per_feature: bool = False
    prior_scale: float = 1.0
    doc: str = ""

    def shape(self, n_features: int) -> tuple[int, ...]:
        """Shape of the parameter for a GLM with ``n_features`` weights."""
        return (n_features,) if self.per_feature else ()

    def prior(self, n_features: int) -> dist.TorchDistribution:
        """Default prior: a Normal on the unconstrained scale, pushed through the constraint's bijection."""
        transform = biject_to(self.constraint)
        loc = transform.inv(torch.tensor(float(self.default), dtype=torch.get_default_dtype()))
        base = dist.Normal(loc.expand(self.shape(n_features)), self.prior_scale)
        if self.per_feature:
            base = base.to_event(1)
        return dist.TransformedDistribution(base, [transform])


class LearningRule(abc.ABC):
    """Base class of all learning rules (parametric in other_rules/, neural in models/).

    Subclasses declare ``parameters`` (name -> :class:`Parameter`), set ``context_size`` when the rule reads
    history, and implement :meth:`drift`. Rules are stateless objects: all state lives in the ``context``
    tensors passed in and out, and all randomness stays outside.
    """

    parameters: ClassVar[Mapping[str, Parameter]] = {}
    context_size: ClassVar[int] = 0
    fittable: ClassVar[bool] = True
    markov: ClassVar[bool] = True

    @property
    def name(self) -> str:
        """Short name of the rule (the class name)."""
        return type(self).__name__

    def default_params(self, n_features: int) -> dict[str, Tensor]:
        """Parameter values from the declared defaults, shaped for ``n_features`` weights."""
        dtype = torch.get_default_dtype()
        return {name: torch.full(p.shape(n_features), float(p.default), dtype=dtype)
                for name, p in self.parameters.items()}

    def init_context(self, params: Params, batch_shape: tuple[int, ...], n_features: int) -> Tensor:
        """Context before the first trial, shape ``(*batch_shape, context_size)``."""
        return torch.zeros(*batch_shape, self.context_size, dtype=torch.get_default_dtype())

    def next_context(self, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Context after observing trial ``(x, y, r)``; Markov rules return it unchanged."""
        return context

    @abc.abstractmethod
    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return the expected weight change after a trial, shape ``(*batch, K)``."""

    def contexts(self, params: Params, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Contexts of a whole sequence, shape ``(*batch, T, C)``, from data only.

        ``x`` is ``(*batch, T, K)`` and ``y``, ``r`` are ``(*batch, T)``. Rules with a closed form (or a
        recurrent network) override this or :meth:`contexts_from`.
        """
        return self.contexts_from(params, self.init_context(params, x.shape[:-2], x.shape[-1]), x, y, r)

    def contexts_from(self, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Contexts after each trial of ``(x, y, r)``, starting from ``context`` (shapes as :meth:`contexts`).

        Chunked rollouts carry the context from one chunk into the next.
        """
        if self.markov and self.context_size == 0:
            return context.unsqueeze(-2).expand(*x.shape[:-1], 0)
        out = []
        for t in range(x.shape[-2]):
            context = self.next_context(params, context, x[..., t, :], y[..., t], r[..., t])
            out.append(context)
        return torch.stack(out, dim=-2) if out else context.unsqueeze(-2)[..., :0, :]

    def derived(self, params: Params) -> dict[str, Tensor]:
        """Interpretable quantities computed from the parameters, reported beside them with intervals.

        A rule declares its parameters in the coordinates the data identify (so that a Gaussian posterior on
        the unconstrained scale fits) and reports the familiar ones here; none by default.
        """
        return {}

    def step(self, params: Params, state: Tensor, w: Tensor, x: Tensor, y: Tensor, r: Tensor
             ) -> tuple[Tensor, Tensor]:
        """One simulator step: the weight change after trial ``(x, y, r)`` and the new state.

        The default composes :meth:`next_context` and :meth:`drift`, so the simulator and the likelihood
        compute the same update.
        """
        context = self.next_context(params, state, x, y, r)
        return self.drift(params, w, x, y, r, context), context
