"""Rat W053 (psytrack's sample data): fit several rules, export to ArviZ, rank them by PSIS-LOO.

Also draws our random-walk weights with 90% bands over psytrack.hyperOpt's (same features, same run) so the
shapes can be compared by eye: bench/results/rat_weights.png. Writes bench/results/rat_loo.{md,csv}.
"""

import logging
import os
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import psytrack
from psytrack import hyperOpt

from learnrules.behavior import load_psytrack_rat
from learnrules.inference import fit, to_inference_data
from learnrules.inference.variational.fit import FitConfig
from learnrules.models.dynamics import DynamicsConfig
from learnrules.other_rules import make_rule
from learnrules.plots import plot_weights

from report import markdown, setup

RESULTS = Path(__file__).with_name("results")
FEATURES = ("bias", "s1", "s2")
RULES = ("zero", "reinforce", "reinforce-baseline", "asymmetric", "reward-gated")


def psytrack_weights() -> np.ndarray:
    """psytrack.hyperOpt's MAP weights (T, 3) of W053, sigma learned."""
    path = os.path.join(os.path.dirname(psytrack.__file__), "examples", "sampleRatData.npz")
    raw = np.load(path, allow_pickle=True)["D"].item()
    hyper = {"sigInit": 2 ** 4.0, "sigma": [2 ** -4.0] * 3, "sigDay": None}
    _, _, w_mode, _ = hyperOpt(raw, hyper, {"bias": 1, "s1": 1, "s2": 1}, ["sigma"])
    return np.asarray(w_mode).T


def main() -> None:
    setup(log_level=logging.WARNING)
    data = load_psytrack_rat()
    config = FitConfig(dynamics=DynamicsConfig(sigma=2 ** -4.0, sigma_init=2 ** 4.0))
    exports, rows = {}, []
    for name in RULES:
        rule = None if name == "zero" else make_rule(name)
        result = fit(data, rule=rule, features=FEATURES, config=config, seed=0)
        start = time.perf_counter()
        idata = to_inference_data(result, data, rule=rule, n_draws=200, seed=0)
        export_s = time.perf_counter() - start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loo = az.loo(idata, pointwise=True)
        exports[name] = idata
        rows.append({"rule": name, "elbo": result.elbo, "fit_s": result.elapsed_s, "export_s": export_s,
                     "elpd_loo": float(loo["elpd_loo"]), "se": float(loo["se"]), "p_loo": float(loo["p_loo"]),
                     "pareto_k_gt_0.7": int((loo["pareto_k"].values > 0.7).sum()),
                     "sigma": " ".join(f"{s:.4g}" for s in result.sigma),
                     "params": "; ".join(f"{k}={np.round(v, 4).tolist()}" for k, v in result.params.items())})
        if name == "zero":
            plot_weights(result.weights, true_weights=psytrack_weights(), true_label="psytrack.hyperOpt",
                         path=RESULTS / "rat_weights.png")
        print(rows[-1], flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compare = az.compare(exports)
    table = pd.DataFrame(rows).set_index("rule")
    table = table.join(compare[["rank", "elpd_diff", "dse", "weight"]]).sort_values("rank")
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "rat_loo.csv")
    text = ("# Rat W053: rules ranked by PSIS-LOO on our ArviZ export\n\n"
            f"20,000 trials, features {', '.join(FEATURES)}, sigma learned; 200 posterior draws per fit "
            "(weights from q's per-trial marginals, parameters from their Laplace posterior); `az.compare` "
            "(stacking weights). Torch 1 thread on a shared 2-core machine. Weights vs psytrack: "
            "rat_weights.png.\n\n" + markdown(table, index=True, digits=5) + "\n")
    (RESULTS / "rat_loo.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
