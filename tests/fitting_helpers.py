"""Shared helpers of the inference and model tests: a local REINFORCE rule, a tiny simulator, the rat W053 subset."""

import os

import numpy as np
import torch
from torch.distributions import constraints

from learnrules.behavior import load_psytrack_rat
from learnrules.behavior.trials import AnimalTrials, TrialData
from learnrules.models.inputs import CohortTensors
from learnrules.models.rule import LearningRule, Parameter


class NaNRule(LearningRule):
    parameters = {"alpha": Parameter(0.1, constraints.positive)}

    def drift(self, params, w, x, y, r, context):
        return torch.full_like(w, float("nan"))


def simulate(rule, params, *, n_animals, n_trials, sigma, seed, n_sessions=4, missing=0.0):
    """Simulate a 2AFC cohort (features bias, stimulus) and return (CohortTensors, true weights)."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.tensor([-1.0, -0.5, -0.25, -0.125, 0.0, 0.125, 0.25, 0.5, 1.0])
    x = torch.stack([torch.ones(n_animals, n_trials),
                     levels[torch.randint(0, len(levels), (n_animals, n_trials), generator=g)]], -1)
    w = torch.zeros(n_animals, x.shape[-1])
    w[:, 0] = 0.3 * torch.randn(n_animals, generator=g)
    w[:, 1] = 0.5
    ys, rs, ws = [], [], []
    observed = torch.rand(n_animals, n_trials, generator=g) >= missing
    for t in range(n_trials):
        ws.append(w)
        p = torch.sigmoid((w * x[:, t]).sum(-1))
        y = (torch.rand(n_animals, generator=g) < p).to(x.dtype)
        side = torch.where(x[:, t, 1] == 0, (torch.rand(n_animals, generator=g) < 0.5).to(x.dtype),
                           (x[:, t, 1] > 0).to(x.dtype))
        r = (y == side).to(x.dtype) * observed[:, t]
        y = y * observed[:, t]
        drift = rule.drift(params, w, x[:, t], y, r, None) if rule is not None else 0
        w = w + observed[:, t].unsqueeze(-1) * drift + sigma * torch.randn(w.shape, generator=g)
        ys.append(y)
        rs.append(r)
    start = torch.zeros(n_animals, n_trials, dtype=torch.bool)
    start[:, ::max(n_trials // n_sessions, 1)] = True
    cohort = CohortTensors(x, torch.stack(ys, 1), torch.stack(rs, 1), observed,
                           torch.ones(n_animals, n_trials, dtype=torch.bool), start,
                           torch.full((n_animals,), n_trials), ("bias", "stimulus"),
                           tuple(f"a{i}" for i in range(n_animals)))
    return cohort, torch.stack(ws, 1)


def rat_w053(n_trials=None):
    """Rat W053 from psytrack's wheel as TrialData (covariates s1, s2; choice 1 = right) and the raw dict."""
    import psytrack

    path = os.path.join(os.path.dirname(psytrack.__file__), "examples", "sampleRatData.npz")
    raw = np.load(path, allow_pickle=True)["D"].item()
    n = len(raw["y"]) if n_trials is None else n_trials
    full = load_psytrack_rat().animals[0]
    animal = AnimalTrials("W053", full.session[:n], full.trial[:n], full.choice[:n], full.reward[:n],
                          full.answer[:n], {k: v[:n] for k, v in full.covariates.items()})
    subset = {"y": raw["y"][:n], "inputs": {k: v[:n] for k, v in raw["inputs"].items()}}
    return TrialData((animal,)), subset
