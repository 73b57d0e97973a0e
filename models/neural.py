"""Neural learning rules: an MLP (DNNGLM, Markov) and a GRU-conditioned MLP (RNNGLM) of Liu et al. (2025).

Both are :class:`~learnrules.models.rule.LearningRule` objects that *own* a ``torch.nn.Module``
(``rule.network``) instead of being one: ``LearningRule.parameters`` (the declared priors of parametric
rules, empty here) and ``nn.Module.parameters()`` would collide on one object. A fit finds the trainable
tensors with :func:`rule_network` (e.g. ``pyro.module("rule", rule_network(rule))`` or
``torch.optim.Adam(rule_network(rule).parameters())``); the ``params`` mapping of the rule interface is
ignored by neural rules. :func:`learnrules.inference.variational.fit.fit` trains a copy of the network on the collapsed
ELBO of the variational fit (``FitResult.neural_rule()`` rebuilds it), and
:func:`learnrules.inference.rollout.rollout_fit.fit_rollout` by deterministic rollout.

Inputs of the update, per trial: the current weights ``w`` (K), the features ``x`` (K), the choice ``y``
and the reward ``r`` (both recoded to -1/+1 inside the network). The correct side is not a separate input:
in a two-alternative task it is a function of ``(y, r)`` (``y`` if rewarded, ``1 - y`` if not). The session
start is not an input either: the rule interface (``drift``/``next_context``) carries only ``(x, y, r)``;
add a session-start feature to the design matrix to give it to the network.

The output is ``scale * net(...)`` with a learnable per-weight ``scale`` initialized small (``init_scale``),
so an untrained rule is close to the zero rule (a constant-weight GLM) and a rollout starts stable.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from learnrules.models.rule import LearningRule, Params

__all__ = [
    "NeuralRuleConfig",
    "NeuralRule",
    "MLPRule",
    "GRURule",
    "rule_network",
    "neural_rule_from_config",
    "save_neural_rule",
    "load_neural_rule",
]

Activation = Literal["relu", "tanh", "silu"]
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


@dataclass(frozen=True)
class NeuralRuleConfig:
    """Constructor arguments of a neural rule, enough to rebuild it before loading a state dict.

    Parameters
    ----------
    kind : {"mlp", "gru"}
        :class:`MLPRule` or :class:`GRURule`.
    n_features : int
        Number of GLM weights K.
    hidden : tuple of int
        Widths of the hidden layers of the update MLP.
    gru_hidden : int
        Size of the GRU state (the context); unused by the MLP rule.
    activation : {"relu", "tanh", "silu"}
        Nonlinearity between layers.
    init_scale : float
        Initial value of the per-weight output scale (small: the initial rule is near zero); unused with
        ``max_update``.
    max_update : float or None
        Bounded head: the output is ``max_update * tanh(out / max_update)`` with the last layer initialized at
        zero, so the network starts as exactly the zero rule and can never move a weight by more than
        ``max_update`` in one trial (a replayed rule cannot jump). None: the unbounded ``scale * out`` head.
    base : str or None
        Registry name of the parametric rule a :class:`~learnrules.models.hybrid.HybridRule` adds the network
        to (None: the network alone).
    """

    kind: Literal["mlp", "gru"]
    n_features: int
    hidden: tuple[int, ...] = (32, 32)
    gru_hidden: int = 16
    activation: Activation = "relu"
    init_scale: float = 1e-3
    max_update: float | None = None
    base: str | None = None

    def __post_init__(self) -> None:
        if self.max_update is not None and not self.max_update > 0:
            raise ValueError(f"max_update must be positive or None, got {self.max_update}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (tuples become lists)."""
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NeuralRuleConfig:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**{**data, "hidden": tuple(int(h) for h in data.get("hidden", (32, 32)))})


class _UpdateNet(nn.Module):
    """``scale * MLP(inputs)`` with a learnable per-weight output scale, or a bounded head starting at zero.

    With ``max_update`` the output is ``max_update * tanh(MLP(inputs) / max_update)`` and the last layer starts
    at zero: the output is exactly zero at initialization, while its gradient is not (the hidden units are).
    """

    def __init__(self, n_in: int, n_out: int, hidden: tuple[int, ...], activation: Activation,
                 init_scale: float, max_update: float | None = None) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, n_out))
        self.mlp = nn.Sequential(*layers)
        self.max_update = max_update
        if max_update is None:
            self.scale = nn.Parameter(torch.full((n_out,), float(init_scale)))
        else:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)

    def forward(self, inputs: Tensor) -> Tensor:
        if self.max_update is None:
            return self.scale * self.mlp(inputs)
        return self.max_update * torch.tanh(self.mlp(inputs) / self.max_update)


def _signed(v: Tensor) -> Tensor:
    """Map 0/1 codes to -1/+1 (zero-centred inputs train better)."""
    return (2.0 * v - 1.0).unsqueeze(-1)


def _trial_inputs(x: Tensor, y: Tensor, r: Tensor) -> Tensor:
    """Observed trial inputs ``[x, y, r]``, shape ``(*batch, K + 2)``."""
    return torch.cat([x, _signed(y).to(x.dtype), _signed(r).to(x.dtype)], dim=-1)


class NeuralRule(LearningRule):
    """Base class of rules whose update is a neural network (``self.network``).

    Subclasses build ``self.network`` in ``__init__`` from a :class:`NeuralRuleConfig`. The state dict of the
    network plus ``config`` rebuild the rule without pickle (see :func:`neural_rule_from_config`).
    """

    network: nn.Module

    def __init__(self, config: NeuralRuleConfig, *, seed: int | None = None) -> None:
        if config.n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {config.n_features}")
        self.config = config
        # Seeded construction without touching the caller's global RNG stream.
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.network = self._build()
        self.network.to(torch.get_default_dtype())

    def _build(self) -> nn.Module:
        raise NotImplementedError

    @property
    def n_features(self) -> int:
        """Number of GLM weights K."""
        return self.config.n_features

    def state_dict(self) -> dict[str, Tensor]:
        """Return the network's state dict (tensors only)."""
        return self.network.state_dict()

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load a state dict produced by :meth:`state_dict` (strict)."""
        self.network.load_state_dict(state)

    def output_layer(self) -> nn.Linear:
        """Return the last linear layer of the update network: its weights set the size of the network's output."""
        return [m for m in self.network.modules() if isinstance(m, nn.Linear)][-1]

    def copy(self) -> NeuralRule:
        """Return an independent deep copy (a fit trains a copy, never the caller's rule)."""
        return copy.deepcopy(self)

    def _check(self, w: Tensor) -> None:
        if w.shape[-1] != self.n_features:
            raise ValueError(f"{self.name} was built for {self.n_features} weights, got w of shape "
                             f"{tuple(w.shape)}")


class MLPRule(NeuralRule):
    """Markov neural rule (DNNGLM): ``dw = scale * MLP([w, x, y, r])``.

    Parameters
    ----------
    n_features : int
        Number of GLM weights K.
    hidden : tuple of int
        Hidden layer widths.
    activation : {"relu", "tanh", "silu"}
        Nonlinearity.
    init_scale : float
        Initial per-weight output scale.
    max_update : float, optional
        Bounded head starting at exactly zero (see :class:`NeuralRuleConfig`).
    seed : int, optional
        Seed of the network's initialization.
    """

    markov = True
    context_size = 0

    def __init__(self, n_features: int, *, hidden: tuple[int, ...] = (32, 32), activation: Activation = "relu",
                 init_scale: float = 1e-3, max_update: float | None = None, seed: int | None = None) -> None:
        super().__init__(NeuralRuleConfig("mlp", n_features, tuple(hidden), 16, activation, init_scale, max_update),
                         seed=seed)

    def _build(self) -> nn.Module:
        c = self.config
        return _UpdateNet(2 * c.n_features + 2, c.n_features, c.hidden, c.activation, c.init_scale, c.max_update)

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``scale * MLP([w, x, y, r])``, shape ``(*batch, K)``; ``params`` and ``context`` are unused."""
        self._check(w)
        return self.network(torch.cat([w, _trial_inputs(x, y, r)], dim=-1))


class _GRUNet(nn.Module):
    """A GRU over observed trials plus the update MLP reading ``[w, x, y, r, h]``."""

    def __init__(self, config: NeuralRuleConfig) -> None:
        super().__init__()
        k, h = config.n_features, config.gru_hidden
        self.gru = nn.GRU(k + 2, h, batch_first=True)
        self.update = _UpdateNet(2 * k + 2 + h, k, config.hidden, config.activation, config.init_scale,
                                 config.max_update)


class GRURule(NeuralRule):
    """History-dependent neural rule (RNNGLM): ``dw = scale * MLP([w, x, y, r, h_t])``.

    ``h_t`` is the state of a GRU that has read the observed trials ``[x, y, r]`` up to and including trial
    ``t``, so the weights stay Markov given the data. ``contexts`` runs ``nn.GRU`` over a whole sequence at
    once; when gradients are on, it backpropagates through windows of ``bptt_window`` trials only (the states
    are exact, the gradient truncated): backprop through 3,000 sequential GRU steps costs ~30x more than
    through 30 windows of 100 run as one batch, and the reward histories a rule reads are far shorter.

    Parameters
    ----------
    n_features : int
        Number of GLM weights K.
    hidden : tuple of int
        Hidden layer widths of the update MLP.
    gru_hidden : int
        Size of the GRU state (= ``context_size``).
    activation : {"relu", "tanh", "silu"}
        Nonlinearity of the update MLP.
    init_scale : float
        Initial per-weight output scale.
    max_update : float, optional
        Bounded head starting at exactly zero (see :class:`NeuralRuleConfig`).
    seed : int, optional
        Seed of the network's initialization.
    bptt_window : int or None
        Trials per window of the truncated backprop through the GRU in :meth:`contexts` (None: the whole
        sequence). A training setting, not part of the model: it changes gradients, never values.
    """

    markov = False

    def __init__(self, n_features: int, *, hidden: tuple[int, ...] = (32, 32), gru_hidden: int = 16,
                 activation: Activation = "relu", init_scale: float = 1e-3, max_update: float | None = None,
                 seed: int | None = None, bptt_window: int | None = 100) -> None:
        if bptt_window is not None and bptt_window < 1:
            raise ValueError(f"bptt_window must be a positive number of trials or None, got {bptt_window}")
        super().__init__(NeuralRuleConfig("gru", n_features, tuple(hidden), gru_hidden, activation, init_scale,
                                          max_update), seed=seed)
        self.context_size = gru_hidden  # instance value shadows the ClassVar default of 0
        self.bptt_window = bptt_window

    def _build(self) -> nn.Module:
        return _GRUNet(self.config)

    @classmethod
    def from_mlp(cls, mlp: MLPRule, *, gru_hidden: int = 16, seed: int | None = None,
                 bptt_window: int | None = 100) -> GRURule:
        """Return a GRU rule whose update is exactly ``mlp``'s, whatever the history.

        The update network copies ``mlp``'s layers and reads the GRU state through zero weights; the GRU
        itself is initialized from ``seed``. A fit started from it begins where a Markov fit ended and only has
        to learn what the reward history adds (the gradient on those zero weights is not zero: the state is).

        Parameters
        ----------
        mlp : MLPRule
            A (fitted) Markov rule; it is not modified.
        gru_hidden, seed, bptt_window
            As in :class:`GRURule`; the layer widths, activation and output scale come from ``mlp``.
        """
        c = mlp.config
        rule = cls(c.n_features, hidden=c.hidden, gru_hidden=gru_hidden, activation=c.activation,
                   init_scale=c.init_scale, max_update=c.max_update, seed=seed, bptt_window=bptt_window)
        state = dict(mlp.state_dict())  # load_state_dict below copies: the GRU shares no storage with mlp
        first = state["mlp.0.weight"]
        state["mlp.0.weight"] = torch.cat([first, first.new_zeros(first.shape[0], gru_hidden)], dim=1)
        rule.network.update.load_state_dict(state)
        return rule

    def drift(self, params: Params, w: Tensor, x: Tensor, y: Tensor, r: Tensor, context: Tensor) -> Tensor:
        """Return ``scale * MLP([w, x, y, r, context])``, shape ``(*batch, K)``."""
        self._check(w)
        return self.network.update(torch.cat([w, _trial_inputs(x, y, r), context], dim=-1))

    def next_context(self, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return the GRU state after reading trial ``(x, y, r)``."""
        return self.contexts_from(params, context, x.unsqueeze(-2), y.unsqueeze(-1), r.unsqueeze(-1))[..., 0, :]

    def contexts(self, params: Params, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return the GRU states after each trial, shape ``(*batch, T, C)`` (truncated backprop, see above)."""
        context = self.init_context(params, x.shape[:-2], x.shape[-1]).to(x.dtype)
        window, n_trials = self.bptt_window, x.shape[-2]
        if window is None or n_trials <= window or not torch.is_grad_enabled():
            return self.contexts_from(params, context, x, y, r)
        with torch.no_grad():
            exact = self.contexts_from(params, context, x, y, r)
        n_windows = -(-n_trials // window)
        starts = torch.cat([context.unsqueeze(-2), exact[..., window - 1::window, :][..., :n_windows - 1, :]], -2)
        pad = n_windows * window - n_trials  # trailing padding cannot change earlier states

        def windows(v: Tensor, event: int) -> Tensor:
            v = nn.functional.pad(v, (0, 0) * event + (0, pad))
            return v.reshape(*v.shape[:-1 - event], n_windows, window, *v.shape[v.dim() - event:])

        out = self.contexts_from(params, starts, windows(x, 1), windows(y, 0), windows(r, 0))
        return out.reshape(*x.shape[:-2], n_windows * window, self.context_size)[..., :n_trials, :]

    def contexts_from(self, params: Params, context: Tensor, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Return the states after each trial of ``(x, y, r)`` (``(*batch, T, ...)``) starting from ``context``.

        Used by chunked rollouts, which carry the state across chunks.
        """
        batch = x.shape[:-2]
        inputs = _trial_inputs(x, y, r).reshape(-1, x.shape[-2], x.shape[-1] + 2)
        h0 = context.reshape(1, -1, self.context_size).contiguous()
        if inputs.shape[1] == 0:
            return context.unsqueeze(-2)[..., :0, :]
        out, _ = self.network.gru(inputs, h0)
        return out.reshape(*batch, x.shape[-2], self.context_size)


def rule_network(rule: LearningRule) -> nn.Module | None:
    """Return the trainable ``nn.Module`` of a neural rule, or None for a rule without one."""
    network = getattr(rule, "network", None)
    return network if isinstance(network, nn.Module) else None


def neural_rule_from_config(config: NeuralRuleConfig | Mapping[str, Any],
                            state: Mapping[str, Tensor] | None = None) -> NeuralRule:
    """Rebuild a neural rule from its config (a :class:`NeuralRuleConfig` or its dict), optionally loading state.

    Examples
    --------
    >>> rule = MLPRule(2, seed=0)
    >>> clone = neural_rule_from_config(rule.config.to_dict(), rule.state_dict())
    """
    if not isinstance(config, NeuralRuleConfig):
        config = NeuralRuleConfig.from_dict(config)
    if config.kind == "mlp":
        rule: NeuralRule = MLPRule(config.n_features, hidden=config.hidden, activation=config.activation,
                                   init_scale=config.init_scale, max_update=config.max_update)
    elif config.kind == "gru":
        rule = GRURule(config.n_features, hidden=config.hidden, gru_hidden=config.gru_hidden,
                       activation=config.activation, init_scale=config.init_scale, max_update=config.max_update)
    else:
        raise ValueError(f"config kind must be 'mlp' or 'gru', got {config.kind!r}")
    if config.base is not None:
        from learnrules.models.hybrid import HybridRule  # the hybrid module builds on this one
        from learnrules.other_rules.registry import make_rule  # other_rules builds on models: import late

        rule = HybridRule(make_rule(config.base), rule, base_name=config.base)
    if state is not None:
        rule.load_state_dict(state)
    return rule


def save_neural_rule(rule: NeuralRule, path: str | Path) -> None:
    """Write the rule's config (as JSON text) and state dict to ``path`` with ``torch.save`` (no pickled objects)."""
    torch.save({"config": json.dumps(rule.config.to_dict()), "state": rule.state_dict()}, Path(path))


def _check_archive(path: Path) -> None:
    """Refuse a file that is not torch's zip archive, or whose members would inflate beyond the file's size."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{str(path)!r} is not a rule.pt written by save_neural_rule ({err})") from None
    inflated = sum(m.file_size for m in members)
    if any(m.compress_type != zipfile.ZIP_STORED for m in members) or inflated > path.stat().st_size:
        raise ValueError(f"{str(path)!r}: its members declare {inflated} bytes in a file of {path.stat().st_size} "
                         "(compressed members): refused as corrupt")


def load_neural_rule(path: str | Path) -> NeuralRule:
    """Read a rule written by :func:`save_neural_rule` (``torch.load(weights_only=True)``).

    The archive's sizes are checked before loading, and every tensor of the state against the architecture the
    config describes (names and shapes) before the network takes it.

    Raises
    ------
    ValueError
        Naming the file and the field (``config``, ``state`` or a state entry) that is missing or disagrees.
    """
    import pickle

    path = Path(path)
    _check_archive(path)
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise ValueError(f"{str(path)!r} is not a rule.pt written by save_neural_rule ({err})") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("config"), str) or not isinstance(blob.get("state"),
                                                                                               dict):
        raise ValueError(f"{str(path)!r}, fields 'config' (JSON text) and 'state' (tensors): missing or of the "
                         "wrong type")
    try:
        rule = neural_rule_from_config(json.loads(blob["config"]))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{str(path)!r}, field 'config': {type(err).__name__}: {err}") from None
    expected = {k: tuple(v.shape) for k, v in rule.state_dict().items()}
    state = blob["state"]
    for key in sorted(set(expected) | set(state)):
        if key not in state or key not in expected:
            raise ValueError(f"{str(path)!r}, field 'state.{key}': " + ("missing" if key not in state else
                             "not part of the network the config describes"))
        if not isinstance(state[key], Tensor) or tuple(state[key].shape) != expected[key]:
            shape = tuple(state[key].shape) if isinstance(state[key], Tensor) else type(state[key]).__name__
            raise ValueError(f"{str(path)!r}, field 'state.{key}': shape {shape}, but the config's network has "
                             f"{expected[key]}")
    rule.load_state_dict(state)
    return rule
