r"""Hybrid rules: a parametric rule plus a network that learns what it misses.

.. math:: f(w, x, y, r, h) = f_\theta(w, x, y, r) + \mathrm{NN}(w, x, y, r, h)

The network part is an :class:`~learnrules.models.neural.MLPRule` or a
:class:`~learnrules.models.neural.GRURule` built with a bounded head (``max_update``) whose last layer starts
at zero, so a hybrid starts as exactly its parametric rule: a fit warm-started at the parametric fit's optimum
(:func:`learnrules.workflow.fit_model` does this) can only go up from there. The parametric part keeps its
declared parameters and priors (the fit learns ``theta`` and the network jointly); the network's tensors are
``rule.network``, as for any neural rule, and ``rule.part`` is the network alone as a rule of its own (its
map is "what the parametric rule misses").

A plain network rule is the hybrid of the zero rule: ``mlp`` and ``zero+mlp`` are the same model.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from learnrules.models.neural import NeuralRule
from learnrules.models.rule import LearningRule, Params

__all__ = ["HybridRule"]


def _registry_name(rule: LearningRule) -> str:
    from learnrules.other_rules.registry import RULES  # other_rules builds on models: import late

    names = [name for name, cls in RULES.items() if type(rule) is cls]
    if not names:
        raise ValueError(f"{rule.name} is not a registered rule: pass base_name")
    return names[0]


class HybridRule(NeuralRule):
    """A parametric rule plus a network rule: ``drift = base.drift + part.drift``.

    Parameters
    ----------
    base : LearningRule
        A fittable parametric rule (its ``parameters`` become the hybrid's).
    part : NeuralRule
        The network rule, ideally built with ``max_update`` so that its output starts at exactly zero. It is
        used, not copied: the hybrid trains ``part.network``.
    base_name : str, optional
        Registry name of ``base``, stored in the config so that the hybrid can be rebuilt from it
        (:func:`~learnrules.models.neural.neural_rule_from_config`); default: the name ``base``'s class is
        registered under.

    Examples
    --------
    >>> from learnrules.models.neural import MLPRule
    >>> from learnrules.other_rules import make_rule
    >>> rule = HybridRule(make_rule("reinforce-baseline"), MLPRule(2, max_update=0.1, seed=0))
    >>> rule.name
    'ReinforceBaseline+MLP'
    """

    def __init__(self, base: LearningRule, part: NeuralRule, *, base_name: str | None = None) -> None:
        if isinstance(base, NeuralRule) or not base.fittable:
            raise ValueError(f"the base of a hybrid rule must be a fittable parametric rule, got {base.name}")
        if isinstance(part, HybridRule):
            raise ValueError("the network part of a hybrid rule must be an MLP or GRU rule, not a hybrid")
        self.base, self.part = base, part
        self.config = replace(part.config, base=base_name or _registry_name(base))
        self.network = part.network
        # instance values shadow the ClassVar defaults of LearningRule
        self.parameters = dict(base.parameters)
        # a base context_size of -1 means one context entry per weight (e.g. an eligibility trace)
        self.base_context_size = part.n_features if base.context_size < 0 else base.context_size
        self.context_size = self.base_context_size + part.context_size
        self.markov = base.markov and part.markov

    @property
    def name(self) -> str:
        """Return ``<base class>+MLP`` or ``<base class>+GRU``."""
        return f"{self.base.name}+{self.config.kind.upper()}"

    def default_params(self, n_features: int) -> dict[str, Tensor]:
        """Return the base rule's defaults."""
        return self.base.default_params(n_features)

    def derived(self, params: Params) -> dict[str, Tensor]:
        """Return the base rule's derived quantities."""
        return self.base.derived(params)

    def _split(self, context: Tensor) -> tuple[Tensor, Tensor]:
        n = self.base_context_size
        return context[..., :n], context[..., n:]

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``base.drift + part.drift``, shape ``(*batch, K)``."""
        base_ctx, part_ctx = self._split(context)
        return self.base.drift(params, w, x, y, r, base_ctx) + self.part.drift({}, w, x, y, r, part_ctx)

    def init_context(self, params: Params, batch_shape: tuple[int, ...], n_features: int) -> Tensor:
        """Return the base's and the part's initial contexts, side by side."""
        return torch.cat([self.base.init_context(params, batch_shape, n_features),
                          self.part.init_context({}, batch_shape, n_features)], -1)

    def next_context(self, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return both contexts after observing trial ``(x, y, r)``."""
        base_ctx, part_ctx = self._split(context)
        return torch.cat([self.base.next_context(params, base_ctx, x, y, r),
                          self.part.next_context({}, part_ctx, x, y, r)], -1)

    def contexts(self, params: Params, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return both rules' contexts of a sequence (each by its own fast path), shape ``(*batch, T, C)``."""
        return torch.cat([self._base_contexts(params, x, y, r), self.part.contexts({}, x, y, r)], -1)

    def contexts_from(self, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return both rules' contexts after each trial, starting from ``context``."""
        base_ctx, part_ctx = self._split(context)
        return torch.cat([self.base.contexts_from(params, base_ctx, x, y, r),
                          self.part.contexts_from({}, part_ctx, x, y, r)], -1)

    def _base_contexts(self, params: Params, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        if not self.base_context_size:
            return x.new_zeros(*x.shape[:-1], 0)
        return self.base.contexts(params, x, y, r)
