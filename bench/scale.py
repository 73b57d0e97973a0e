"""Scale of the variational fit: 10^4, 10^5, 10^6 trials (the largest: 50 animals x 20,000 trials).

By default the random walk (sigma learned); ``--rule NAME`` fits a parametric rule instead (its parameters
with the Laplace posterior, as ``learnrules fit`` does) to agents simulated with that rule by
``learnrules.synthetic`` (sigma 0.02, the CLI's default) and read through ``load_trials`` as a user's table
would be. Each size runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its own: first
the fit's, then with the ArviZ export written as ``learnrules fit`` writes it (``posterior.nc``, default
draws). Prints a table and writes bench/results/scale.md and .csv (``scale_<rule>`` with ``--rule``).

Usage: python bench/scale.py [--rule reinforce-baseline]
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from report import markdown, setup

RESULTS = Path(__file__).with_name("results")
SIZES = [(5, 2000), (5, 20000), (50, 20000)]


def simulate(n_animals, n_trials, seed=0):
    """Random-walk agents on a 2AFC task (features bias, stimulus), 100 sessions each."""
    from learnrules.models.inputs import CohortTensors

    rng = np.random.default_rng(seed)
    x = np.stack([np.ones((n_animals, n_trials)), rng.choice([-1, -0.5, -0.25, 0, 0.25, 0.5, 1],
                                                             (n_animals, n_trials))], -1)
    sigma = np.array([0.03, 0.01])
    w = np.cumsum(rng.normal(0, sigma, (n_animals, n_trials, 2)), 1) + np.array([0.0, 1.0])
    y = (rng.random((n_animals, n_trials)) < 1 / (1 + np.exp(-(w * x).sum(-1)))).astype(float)
    start = np.zeros((n_animals, n_trials), dtype=bool)
    start[:, ::max(n_trials // 100, 1)] = True
    return CohortTensors(torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(y), torch.ones(y.shape, dtype=bool),
                         torch.ones(y.shape, dtype=bool), torch.as_tensor(start), torch.full((n_animals,), n_trials),
                         ("bias", "stimulus"), tuple(f"a{i}" for i in range(n_animals))), w, sigma


def simulate_rule(rule, n_animals, n_trials, seed=0):
    """Agents learning with ``rule`` at its default parameters (features bias, stimulus), as a loaded table."""
    from learnrules.behavior import load_trials
    from learnrules.models.inputs import CohortTensors
    from learnrules.synthetic import simulate_cohort

    sigma = np.array([0.02, 0.02])
    sim = simulate_cohort(rule, n_animals=n_animals, n_trials=n_trials, sigma=sigma, seed=seed)
    data = CohortTensors.from_trials(load_trials(sim.table), ("bias", "stimulus"))
    return data, sim.weights, sigma


def one(n_animals, n_trials, rule_name):
    from learnrules.inference.arviz_export import save_netcdf, to_inference_data
    from learnrules.inference.variational.fit import FitConfig, fit
    from learnrules.other_rules import make_rule

    setup(log_level=None)
    if rule_name == "zero":
        (data, w, sigma), rule, truth = simulate(n_animals, n_trials), None, {}
    else:
        rule = make_rule(rule_name)
        data, w, sigma = simulate_rule(rule, n_animals, n_trials)
        truth = {name: p.default for name, p in rule.parameters.items()}  # what simulate_rule used
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    res = fit(data, rule=rule, config=FitConfig())
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start_export = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        idata = to_inference_data(res, data, rule=rule, seed=0)  # default draws, as `learnrules fit` writes
        draws = int(idata.posterior.sizes["draw"])
        nc_mb = os.path.getsize(save_netcdf(idata, Path(folder) / "posterior.nc")) / 1e6
        del idata
    export_s = time.perf_counter() - start_export
    peak_export = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    corr = np.mean([np.corrcoef(res.weights_mean[a, :, 1], w[a, :, 1])[0, 1] for a in range(n_animals)])
    print(json.dumps({"animals": n_animals, "trials_per_animal": n_trials, "total_trials": n_animals * n_trials,
                      "fit_s": elapsed, "steps": res.n_steps, "converged": res.converged,
                      "s_per_step_per_1e5_trials": elapsed / max(res.n_steps, 1) / (n_animals * n_trials / 1e5),
                      "peak_rss_mb": peak, "rss_before_fit_mb": base, "posterior_draws": draws,
                      "export_s": export_s, "posterior_nc_mb": nc_mb, "peak_rss_with_export_mb": peak_export,
                      "sigma_bias": float(res.sigma[0]), "sigma_stimulus": float(res.sigma[1]),
                      "true_sigma_bias": sigma[0], "true_sigma_stimulus": sigma[1],
                      "corr_stimulus_weight": float(corr),
                      **{f"{k}_{i}": float(v) for k, vs in res.params.items() for i, v in enumerate(np.ravel(vs))},
                      **{f"true_{k}": v for k, v in truth.items()}}))


def main(rule_name="zero"):
    rows = []
    for n_animals, n_trials in SIZES:
        out = subprocess.run([sys.executable, __file__, "--one", str(n_animals), str(n_trials), rule_name],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    name = "scale" if rule_name == "zero" else f"scale_{rule_name}"
    table.to_csv(RESULTS / f"{name}.csv", index=False)
    fitted = "random-walk fit" if rule_name == "zero" else f"{rule_name} fit (agents simulated with it, sigma 0.02)"
    text = (f"# Scale of the {fitted} (sigma learned, Laplace for sigma and rule parameters; torch 1 thread, "
            "shared 2 cores)\n\n"
            "Target: 10^6 trials under 2 GB peak RSS, time linear in trials. The export columns: posterior.nc as "
            "`learnrules fit` writes it (default draws, float32 weights), its time, size and the peak RSS "
            "including it.\n\n" + markdown(table) + "\n")
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        one(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 3 and sys.argv[1] == "--rule":
        main(sys.argv[2])
    else:
        main()
