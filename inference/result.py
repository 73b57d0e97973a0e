"""The result of a fit: weight posteriors, rule parameters with intervals, noise, ELBO trace; save/load.

Arrays are kept as NumPy arrays (padded, ``(animals, T_max, ...)``, zeros on padding: use ``valid``), and
tidy DataFrames are built on demand. ``save`` writes one ``.npz`` file holding the arrays and a JSON string
of metadata; ``load`` reads it with ``allow_pickle=False``, so no arbitrary object is ever unpickled.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from learnrules.models.neural import NeuralRule, neural_rule_from_config

__all__ = ["FitResult"]

_ARRAYS = ("weights_mean", "weights_sd", "weights_cov", "valid", "session", "sigma", "sigma_init", "init_mean",
           "elbo_trace", "param_cov")
_OPTIONAL_ARRAYS = ("sigma_session",)
_META = ("rule_name", "feature_names", "subjects", "converged", "n_steps", "elapsed_s", "band_level", "elbo",
         "param_names")


_MAX_INFLATION = 200  # arrays may hold at most this many times the file's bytes (+ 16 MiB), else a zip bomb
_NUMERIC = "biuf"


def _bad(path: Path, field: str, problem: str) -> ValueError:
    return ValueError(f"{str(path)!r}, field {field!r}: {problem}")


def _headers(path: Path, npz: Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Read each member's shape and dtype from its .npy header (nothing allocated); refuse absurd sizes."""
    headers, total = {}, 0
    for name in npz.files:
        with npz.zip.open(f"{name}.npy") as member:
            try:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member, max_header_size=10_000)
            except ValueError as err:
                raise _bad(path, name, f"not a NumPy array ({err})") from None
        if dtype.kind not in _NUMERIC + "U":
            raise _bad(path, name, f"dtype {dtype} is not numeric")
        headers[name] = (tuple(shape), dtype)
        total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    limit = _MAX_INFLATION * path.stat().st_size + 16 * 2**20
    if total > limit:
        raise _bad(path, "arrays", f"declare {total / 2**20:.0f} MiB of data in a file of "
                   f"{path.stat().st_size / 2**20:.1f} MiB; refused as corrupt")
    return headers


def _read_meta(path: Path, npz: Any, headers: Mapping[str, tuple]) -> dict:
    if "meta" not in headers or headers["meta"][1].kind != "U" or headers["meta"][0] != ():
        raise _bad(path, "meta", "missing or not one string: not a fit.npz written by FitResult.save")
    try:
        meta = json.loads(str(npz["meta"]))
    except json.JSONDecodeError as err:
        raise _bad(path, "meta", f"not JSON ({err})") from None
    for key in ("feature_names", "subjects", "param_keys", "param_names", "param_table", *_META):
        if key not in meta:
            raise _bad(path, f"meta.{key}", "missing")
    return meta


def _check_shapes(path: Path, meta: Mapping[str, Any], headers: Mapping[str, tuple]) -> None:
    """Check every array's presence, numeric dtype and shape against the metadata and weights_mean."""
    a, k, p = len(meta["subjects"]), len(meta["feature_names"]), len(meta["param_names"])
    for name in (*_ARRAYS, *(f"param__{key}" for key in meta["param_keys"])):
        if name not in headers:
            raise _bad(path, name, "missing")
        if headers[name][1].kind not in _NUMERIC:
            raise _bad(path, name, f"dtype {headers[name][1]} is not numeric")
    mean = headers["weights_mean"][0]
    if len(mean) != 3 or mean[0] != a or mean[2] != k:
        raise _bad(path, "weights_mean", f"shape {mean} is not (animals={a}, trials, features={k})")
    t = mean[1]
    expected = {"weights_sd": (a, t, k), "weights_cov": (a, t, k, k), "valid": (a, t), "session": (a, t),
                "sigma": (k,), "sigma_init": (k,), "init_mean": (a, k), "param_cov": (p, p)}
    if "sigma_session" in headers:
        expected["sigma_session"] = (k,)
    for name, shape in expected.items():
        if headers[name][0] != shape:
            raise _bad(path, name, f"shape {headers[name][0]} disagrees with the metadata (expected {shape})")
    if len(headers["elbo_trace"][0]) != 1:
        raise _bad(path, "elbo_trace", f"shape {headers['elbo_trace'][0]} is not one-dimensional")


@dataclass(frozen=True)
class FitResult:
    """Posterior summaries of a fit.

    Parameters
    ----------
    rule_name : str
        Name of the learning rule (``"RandomWalk"`` for none).
    feature_names, subjects : tuple of str
        GLM features and animals, in array order.
    weights_mean, weights_sd : ndarray, shape (animals, T, K)
        Posterior mean and sd of the weights (zeros on padding).
    weights_cov : ndarray, shape (animals, T, K, K)
        Posterior covariance of each trial's weights.
    valid : ndarray of bool, shape (animals, T)
        Real trials.
    session : ndarray of int, shape (animals, T)
        Session index within each animal (0-based, -1 on padding).
    sigma : ndarray, shape (K,)
        Weight noise sd per feature.
    sigma_session : ndarray of shape (K,), or None
        Noise sd at session starts, when modelled.
    sigma_init : ndarray, shape (K,)
        Prior sd of the first weights.
    init_mean : ndarray, shape (animals, K)
        Prior mean of each animal's first weights.
    params : dict of str to ndarray
        Rule parameters (posterior mode, constrained scale).
    param_names : tuple of str
        Names of the entries of ``param_cov`` (``"sigma[bias]"``, ``"alpha[stimulus]"``, ``"beta"``, ...).
    param_cov : ndarray, shape (P, P)
        Laplace covariance of the unconstrained hyperparameters (log sigma, unconstrained rule parameters).
    param_table : pandas.DataFrame
        Rule parameters and noise with intervals: parameter, feature, mean, sd, lower, upper.
    elbo_trace : ndarray
        ELBO after each optimization step.
    elbo : float
        Final ELBO (a lower bound on the log evidence, nats).
    converged : bool
    n_steps : int
    elapsed_s : float
    band_level : float
        Probability mass of the credible bands and intervals.
    rule_config : dict or None
        For a neural rule: its :class:`~learnrules.models.neural.NeuralRuleConfig` as a dict (JSON-friendly).
    rule_state : dict of str to ndarray
        For a neural rule: the trained network's state dict (NumPy arrays); empty otherwise. Rebuild the
        trained rule with :meth:`neural_rule`.
    pooling : {"shared", "hierarchical", "independent"}
        How the rule parameters relate across animals (see :mod:`learnrules.inference.variational.pooling`);
        with per-animal pooling ``params`` holds the population median.
    animal_params : dict of str to ndarray
        Per-animal pooling: each animal's parameters (posterior mode, constrained), shape ``(animals, *shape)``.
    animal_table : pandas.DataFrame
        Per-animal pooling: subject, group, parameter, feature, mean, sd, lower, upper, and the estimate from
        the animal's own data alone (``unpooled``, ``unpooled_lower``, ``unpooled_upper``).
    animal_param_cov : ndarray, shape (animals, P, P)
        Per-animal pooling: each animal's posterior covariance of its unconstrained parameters (the entries of
        ``animal_params`` flattened in order), the population's uncertainty included.
    population_table : pandas.DataFrame
        Hierarchical pooling: group, parameter, feature, quantity (``median``, ``sd`` on the unconstrained
        scale, or ``difference`` of a group's mean from the first group's), mean, sd, lower, upper.
    """

    rule_name: str
    feature_names: tuple[str, ...]
    subjects: tuple[str, ...]
    weights_mean: np.ndarray
    weights_sd: np.ndarray
    weights_cov: np.ndarray
    valid: np.ndarray
    session: np.ndarray
    sigma: np.ndarray
    sigma_session: np.ndarray | None
    sigma_init: np.ndarray
    init_mean: np.ndarray
    params: dict = field(default_factory=dict)
    param_names: tuple[str, ...] = ()
    param_cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    param_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    elbo_trace: np.ndarray = field(default_factory=lambda: np.zeros(0))
    elbo: float = float("nan")
    converged: bool = False
    n_steps: int = 0
    elapsed_s: float = 0.0
    band_level: float = 0.9
    rule_config: dict | None = None
    rule_state: dict = field(default_factory=dict)
    pooling: str = "shared"
    animal_params: dict = field(default_factory=dict)
    animal_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    animal_param_cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    population_table: pd.DataFrame = field(default_factory=pd.DataFrame)

    def neural_rule(self) -> NeuralRule | None:
        """Return the trained neural rule (a new object), or None when the fit was not of a neural rule."""
        if self.rule_config is None:
            return None
        state = {k: torch.as_tensor(np.asarray(v)) for k, v in self.rule_state.items()}
        rule = neural_rule_from_config(self.rule_config)
        floats = [t for t in state.values() if t.is_floating_point()]
        if floats:  # rebuild in the trained dtype so the round trip is exact
            rule.network.to(floats[0].dtype)
        rule.load_state_dict(state)
        return rule

    @property
    def lengths(self) -> np.ndarray:
        """Number of trials of each animal."""
        return self.valid.sum(1)

    @property
    def weights(self) -> pd.DataFrame:
        """Tidy weights: subject, trial, session, feature, mean, sd, lower, upper (``attrs['band_level']``)."""
        z = norm.ppf(0.5 + self.band_level / 2)
        a_idx, t_idx = np.nonzero(self.valid)
        k = len(self.feature_names)
        mean = self.weights_mean[a_idx, t_idx].reshape(-1)
        sd = self.weights_sd[a_idx, t_idx].reshape(-1)
        frame = pd.DataFrame({
            "subject": np.repeat(np.asarray(self.subjects, dtype=object)[a_idx], k),
            "trial": np.repeat(t_idx, k),
            "session": np.repeat(self.session[a_idx, t_idx], k),
            "feature": np.tile(np.asarray(self.feature_names, dtype=object), len(a_idx)),
            "mean": mean, "sd": sd, "lower": mean - z * sd, "upper": mean + z * sd,
        })
        frame.attrs["band_level"] = self.band_level
        return frame

    @property
    def parameters(self) -> pd.DataFrame:
        """Rule parameters and noise sd with intervals (``attrs['band_level']``).

        Columns parameter, feature, mean, sd, lower, upper, clamped; ``clamped`` rows have an interval set by
        the Laplace step's floor on the curvature (a direction the data barely inform), not by the data.
        """
        frame = self.param_table.copy()
        frame.attrs["band_level"] = self.band_level
        return frame

    def save(self, path: str | Path) -> Path:
        """Write the result to one ``.npz`` file (arrays plus JSON metadata); return the path."""
        path = Path(path)
        meta = {name: getattr(self, name) for name in _META}
        meta.update(feature_names=list(self.feature_names), subjects=list(self.subjects),
                    param_names=list(self.param_names), param_keys=list(self.params),
                    param_table=self.param_table.to_dict(orient="list"), rule_config=self.rule_config,
                    rule_state_keys=list(self.rule_state))
        if self.pooling != "shared":
            meta.update(pooling=self.pooling, animal_param_keys=list(self.animal_params),
                        animal_table=self.animal_table.to_dict(orient="list"),
                        population_table=self.population_table.to_dict(orient="list"))
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        if self.sigma_session is not None:
            arrays["sigma_session"] = np.asarray(self.sigma_session)
        arrays.update({f"param__{k}": np.asarray(v) for k, v in self.params.items()})
        arrays.update({f"rule_state__{k}": np.asarray(v) for k, v in self.rule_state.items()})
        arrays.update({f"animal_param__{k}": np.asarray(v) for k, v in self.animal_params.items()})
        if self.pooling != "shared":
            arrays["animal_param_cov"] = np.asarray(self.animal_param_cov)
        with path.open("wb") as handle:
            np.savez_compressed(handle, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FitResult:
        """Read a result written by :meth:`save` (no pickle).

        Every array's shape and dtype are checked against the metadata from the file's headers, before any
        array is read, and the arrays may not inflate to more than :data:`_MAX_INFLATION` times the file.

        Raises
        ------
        ValueError
            Naming the file and the field, when the file is not such a result, an array is missing, or its
            shape, dtype or size disagree with the metadata.
        """
        path = Path(path)
        try:
            npz = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{str(path)!r} is not a fit.npz written by FitResult.save ({err})") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"{str(path)!r} is one array, not a fit.npz written by FitResult.save")
        with npz:
            headers = _headers(path, npz)
            meta = _read_meta(path, npz, headers)
            _check_shapes(path, meta, headers)
            arrays = {name: npz[name] for name in _ARRAYS}
            session = npz["sigma_session"] if "sigma_session" in npz else None
            params = {k: npz[f"param__{k}"] for k in meta["param_keys"]}
            state = {k: npz[f"rule_state__{k}"] for k in meta.get("rule_state_keys", [])}
            animal = {k: npz[f"animal_param__{k}"] for k in meta.get("animal_param_keys", [])}
            if "animal_param_cov" in npz:
                pooled_arrays = {"animal_param_cov": npz["animal_param_cov"]}
            else:
                pooled_arrays = {}
        table = pd.DataFrame(meta["param_table"], columns=list(meta["param_table"]) or None)
        kwargs = {f.name: meta[f.name] for f in fields(cls) if f.name in _META}
        kwargs.update(feature_names=tuple(meta["feature_names"]), subjects=tuple(meta["subjects"]),
                      param_names=tuple(meta["param_names"]))
        pooled = {name: pd.DataFrame(meta[name], columns=list(meta[name]) or None)
                  for name in ("animal_table", "population_table") if name in meta}
        return cls(**kwargs, **arrays, sigma_session=session, params=params, param_table=table,
                   rule_config=meta.get("rule_config"), rule_state=state, pooling=meta.get("pooling", "shared"),
                   animal_params=animal, **pooled, **pooled_arrays)
